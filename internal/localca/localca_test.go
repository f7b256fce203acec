package localca

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
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
