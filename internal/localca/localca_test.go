package localca

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCAReusedAndLeafVerifies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Created {
		t.Error("first Open did not report a new CA")
	}
	leaf, reused, err := ca.Leaf([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil || reused {
		t.Fatalf("first leaf: reused %v, %v", reused, err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || !bytes.Equal(again.Certificate().Raw, ca.Certificate().Raw) {
		t.Error("second Open made a new CA")
	}
	leaf2, reused, err := again.Leaf([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil || !reused || leaf2.Leaf.SerialNumber.Cmp(leaf.Leaf.SerialNumber) != 0 {
		t.Errorf("second leaf: reused %v, %v", reused, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(again.Certificate())
	if _, err := leaf2.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err != nil {
		t.Errorf("leaf does not verify against the CA: %v", err)
	}
	// A leaf for other names is issued anew by the same CA.
	other, reused, err := again.Leaf([]string{"dev.localhost"}, nil)
	if err != nil || reused {
		t.Fatalf("leaf for a new name: reused %v, %v", reused, err)
	}
	if _, err := other.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "dev.localhost"}); err != nil {
		t.Errorf("new leaf does not verify: %v", err)
	}
	for _, f := range []string{caKeyFile, LeafKeyFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, st.Mode().Perm(), err)
		}
	}
}

func TestCAKeyMismatchRefused(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if _, err := Open(a); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(b); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(b, caKeyFile))
	os.WriteFile(filepath.Join(a, caKeyFile), key, 0o600)
	if _, err := Open(a); err == nil {
		t.Error("a CA whose key is another's was accepted")
	}
}

// TestCAFilesPrivate: a CA key or directory open to group or others is refused with an
// error naming the file and the fix; a leaf key open to others is replaced; a temporary file
// prepared by someone else in the directory never receives a key.
func TestCAFilesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, caKeyFile)
	os.Chmod(keyPath, 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), keyPath) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("CA key of mode 0644: %v, want a refusal naming the file", err)
	}
	os.Chmod(keyPath, 0o600)
	os.Chmod(dir, 0o755)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("CA directory of mode 0755: %v, want a refusal", err)
	}
	os.Chmod(dir, 0o700)
	// A symbolic link in place of the key is refused too.
	os.Rename(keyPath, keyPath+".real")
	os.Symlink(keyPath+".real", keyPath)
	if _, err := Open(dir); err == nil {
		t.Error("a symbolic link as the CA key was accepted")
	}
	os.Remove(keyPath)
	os.Rename(keyPath+".real", keyPath)
	if _, err := Open(dir); err != nil {
		t.Fatalf("restored CA: %v", err)
	}

	// Someone prepared the old fixed temporary names (world-writable files they own would
	// keep their owner and mode): the keys must not land in them.
	for _, f := range []string{caKeyFile, LeafKeyFile} {
		if err := os.WriteFile(filepath.Join(dir, f+".tmp"), nil, 0o666); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, f+".tmp"), 0o666)
	}
	leaf, _, err := ca.Leaf([]string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, LeafKeyFile+".tmp")); len(b) != 0 {
		t.Error("the leaf key was written into a prepared temporary file")
	}
	// A leaf key open to others is not reused.
	os.Chmod(filepath.Join(dir, LeafKeyFile), 0o644)
	again, reused, err := ca.Leaf([]string{"localhost"}, nil)
	if err != nil || reused || again.Leaf.SerialNumber.Cmp(leaf.Leaf.SerialNumber) == 0 {
		t.Errorf("leaf with a 0644 key: reused %v, %v", reused, err)
	}
	if st, err := os.Stat(filepath.Join(dir, LeafKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("new leaf key: %v %v, want mode 0600", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") && !strings.HasSuffix(e.Name(), ".pem.tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
