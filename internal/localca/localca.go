// Package localca keeps a local certificate authority in a directory and issues TLS server
// certificates from it, for development serving (verge proxy --tls-internal). The CA is
// made once and reused, so a client that trusts it once keeps trusting every leaf issued
// later; the leaf is reused across starts while it covers the names and is far from expiry.
package localca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Lifetimes of what the CA makes.
const (
	// CALifetime is how long a new CA certificate is valid.
	CALifetime = 10 * 365 * 24 * time.Hour
	// LeafLifetime is how long a leaf certificate is valid; it is reissued at start once
	// less than a third of it remains.
	LeafLifetime = 30 * 24 * time.Hour
)

// File names inside the CA directory.
const (
	CACertFile  = "ca.pem"
	caKeyFile   = "ca-key.pem"
	LeafFile    = "cert.pem"
	LeafKeyFile = "key.pem"
)

// CA is a local certificate authority kept in Dir.
type CA struct {
	// Dir holds the CA's and the leaf's PEM files (keys with mode 0600).
	Dir  string
	cert *x509.Certificate
	key  crypto.Signer
	// Created reports that Open made a new CA (clients must be told to trust it).
	Created bool
}

// CertPath returns the path of the CA certificate, the file clients are to trust.
func (ca *CA) CertPath() string { return filepath.Join(ca.Dir, CACertFile) }

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Open loads the CA kept in dir, making one (and dir, mode 0700) when there is none.
func Open(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	if err := checkPrivate(dir, true); err != nil {
		return nil, err
	}
	ca := &CA{Dir: dir}
	if err := checkPrivate(filepath.Join(dir, caKeyFile), false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	cert, key, err := loadPair(filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile))
	switch {
	case err == nil:
		if !cert.IsCA {
			return nil, fmt.Errorf("local CA: %s is not a CA certificate", ca.CertPath())
		}
		if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
			return nil, fmt.Errorf("local CA: %s does not match its key %s; remove both to make a new CA", ca.CertPath(), caKeyFile)
		}
		ca.cert, ca.key = cert, key
		return ca, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("local CA: %w", err)
	}
	if err := ca.create(); err != nil {
		return nil, err
	}
	ca.Created = true
	return ca, nil
}

func (ca *CA) create() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Verge Local CA " + host + " " + now.UTC().Format("2006-01-02"), Organization: []string{"Verge local development CA"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	if err := writePair(filepath.Join(ca.Dir, CACertFile), filepath.Join(ca.Dir, caKeyFile), der, key); err != nil {
		return err
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.key = key
	return nil
}

// Leaf returns the server certificate for names and ips, with the CA in its chain: the
// stored one when it was issued by this CA, covers them all and has more than a third of
// its lifetime left; else a new one, stored. reused reports which.
func (ca *CA) Leaf(names []string, ips []net.IP) (cert *tls.Certificate, reused bool, err error) {
	certFile, keyFile := filepath.Join(ca.Dir, LeafFile), filepath.Join(ca.Dir, LeafKeyFile)
	// A stored leaf key others could read is not reused: a new one replaces it.
	if leaf, _, err := loadPair(certFile, keyFile); err == nil && checkPrivate(keyFile, false) == nil && ca.usable(leaf, names, ips) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err == nil {
			c.Leaf = leaf
			return &c, true, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("local CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"Verge local development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, false, fmt.Errorf("local CA: %w", err)
	}
	if err := writePair(certFile, keyFile, der, key, ca.cert.Raw); err != nil {
		return nil, false, err
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, false, fmt.Errorf("local CA: %w", err)
	}
	c.Leaf, _ = x509.ParseCertificate(der)
	return &c, false, nil
}

// usable reports whether a stored leaf can be served again.
func (ca *CA) usable(leaf *x509.Certificate, names []string, ips []net.IP) bool {
	if leaf.CheckSignatureFrom(ca.cert) != nil {
		return false
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if time.Until(leaf.NotAfter) < life/3 {
		return false
	}
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// TrustHelp tells how to make clients trust the CA.
func (ca *CA) TrustHelp() string {
	p := ca.CertPath()
	return fmt.Sprintf(`The local CA certificate is %[1]s. To trust it:
  curl:           curl --cacert %[1]s https://localhost:PORT/
  Debian/Ubuntu:  sudo cp %[1]s /usr/local/share/ca-certificates/verge-local-ca.crt && sudo update-ca-certificates
  macOS:          sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %[1]s
`, p)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// loadPair reads a PEM certificate (the first of the file) and its PKCS#8 key.
func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, fmt.Errorf("%s or %s holds no PEM block", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyFile)
	}
	return cert, signer, nil
}

// writePair stores a certificate (followed by chain) and its key: the key with mode 0600,
// both written to a temporary file and renamed, so a crash leaves the old pair or the new.
func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey, chain ...[]byte) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	var cb bytes.Buffer
	pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	for _, c := range chain {
		pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, cb.Bytes(), 0o644)
}

// writeAtomic replaces name with data: written to a new temporary file in the same directory
// (created exclusively with mode 0600, so nobody can have it open or prepared beforehand),
// given mode, synced, then renamed over name.
func writeAtomic(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("local CA: %w", err)
	}
	return nil
}

// checkPrivate checks that the directory (dir true) or key file at path is not open to others:
// a regular file or directory (not a symbolic link), owned by this user, with no permission
// bits for group or others. A CA key others can read lets them sign certificates for any name
// that machines trusting the CA accept, so such a key is refused, never used.
func checkPrivate(path string, dir bool) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	kind := "key file"
	if dir {
		kind = "directory"
	}
	switch {
	case dir && !st.IsDir(), !dir && !st.Mode().IsRegular():
		return fmt.Errorf("local CA: %s %s is not a plain %s (a symbolic link?); remove it", kind, path, kind)
	case !ownedByMe(st):
		return fmt.Errorf("local CA: %s %s belongs to another user; remove it or use another directory", kind, path)
	case unixModes && st.Mode().Perm()&0o077 != 0:
		want := "600"
		if dir {
			want = "700"
		}
		return fmt.Errorf("local CA: %s %s has mode %04o, open to group or others; run chmod %s on it (and make a new CA if others may have read the key)", kind, path, st.Mode().Perm(), want)
	}
	return nil
}
