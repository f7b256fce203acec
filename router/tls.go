package router

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/acme"
	"github.com/verge-edge/verge/config"
)

// certSet chooses a certificate by SNI: exact names first, then the longest matching
// wildcard, then the first certificate. Among candidates for a name, the first the client
// supports (signature algorithms, curves) wins.
type certSet struct {
	all   []*tls.Certificate
	exact map[string][]*tls.Certificate
	wild  map[string][]*tls.Certificate // ".example.com" for "*.example.com"
}

func newCertSet(certs []*tls.Certificate) *certSet {
	cs := &certSet{all: certs, exact: map[string][]*tls.Certificate{}, wild: map[string][]*tls.Certificate{}}
	for _, c := range certs {
		names := c.Leaf.DNSNames
		if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
			names = []string{c.Leaf.Subject.CommonName}
		}
		for _, ip := range c.Leaf.IPAddresses {
			names = append(names, ip.String())
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if suffix, ok := strings.CutPrefix(n, "*"); ok {
				cs.wild[suffix] = append(cs.wild[suffix], c)
			} else {
				cs.exact[n] = append(cs.exact[n], c)
			}
		}
	}
	return cs
}

func (cs *certSet) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := cs.lookup(hello); c != nil {
		return c, nil
	}
	if c := pick(hello, cs.all); c != nil {
		return c, nil
	}
	return cs.all[0], nil
}

// lookup returns the certificate naming the server name exactly or by wildcard, or nil.
func (cs *certSet) lookup(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" && hello.Conn != nil {
		// No SNI (an IP address was dialed): match the local address.
		if host, _, err := net.SplitHostPort(hello.Conn.LocalAddr().String()); err == nil {
			name = host
		}
	}
	if c := pick(hello, cs.exact[name]); c != nil {
		return c
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			return pick(hello, cs.wild[name[i:]]) // a wildcard covers exactly one label (RFC 6125 section 6.4.3)
		}
	}
	return nil
}

func pick(hello *tls.ClientHelloInfo, cands []*tls.Certificate) *tls.Certificate {
	for _, c := range cands {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	if len(cands) > 0 && hello.ServerName != "" {
		return cands[0]
	}
	return nil
}

// buildServerTLS makes the tls.Config of a listener; site is its ACME site, nil without.
func buildServerTLS(l *config.Listener, site *acme.Site) (*tls.Config, error) {
	t := l.TLS
	certs := make([]*tls.Certificate, 0, len(t.Certificates))
	for _, c := range t.Certificates {
		cert, err := config.LoadCertificate(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	minV, err := config.TLSVersion(t.MinVersion)
	if err != nil {
		return nil, err
	}
	cs := newCertSet(certs)
	cfg := &tls.Config{
		MinVersion:             minV,
		GetCertificate:         cs.get,
		SessionTicketsDisabled: !*t.SessionTickets,
		NextProtos:             []string{"http/1.1"},
	}
	for _, p := range l.Protocols {
		if p == "h2" {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
	}
	if site != nil {
		cfg.GetCertificate = acmeGetCertificate(site, cs)
		cfg.GetConfigForClient = acmeChallengeConfig(site, minV)
	}
	if ca := t.ClientAuth; ca != nil {
		var pool *x509.CertPool
		if pool, err = config.LoadCAPool(ca.CA); err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if ca.Mode == "request" {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return cfg, nil
}

// ticketKeys rotates the session ticket keys of one listener: a new key every interval, the
// previous two kept for decryption, so a ticket stays valid for two to three intervals. The
// keys outlive config generations, so reloads do not break resumption.
type ticketKeys struct {
	mu       sync.Mutex
	keys     [][32]byte
	cfg      *tls.Config // the current generation's config
	interval atomic.Int64
	stop     chan struct{}
	once     sync.Once
}

func newTicketKeys(interval time.Duration) *ticketKeys {
	k := &ticketKeys{stop: make(chan struct{})}
	k.interval.Store(int64(interval))
	k.rotateLocked()
	go k.run()
	return k
}

func (k *ticketKeys) rotateLocked() {
	var key [32]byte
	_, _ = rand.Read(key[:])
	k.keys = append([][32]byte{key}, k.keys...)
	if len(k.keys) > 3 {
		k.keys = k.keys[:3]
	}
	if k.cfg != nil {
		k.cfg.SetSessionTicketKeys(k.keys)
	}
}

// attach makes cfg use the keys from now on.
func (k *ticketKeys) attach(cfg *tls.Config, interval time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cfg = cfg
	k.interval.Store(int64(interval))
	cfg.SetSessionTicketKeys(k.keys)
}

// run rotates the keys until close.
func (k *ticketKeys) run() {
	for {
		t := time.NewTimer(time.Duration(k.interval.Load()))
		select {
		case <-k.stop:
			t.Stop()
			return
		case <-t.C:
		}
		k.mu.Lock()
		k.rotateLocked()
		k.mu.Unlock()
	}
}

func (k *ticketKeys) close() { k.once.Do(func() { close(k.stop) }) }
