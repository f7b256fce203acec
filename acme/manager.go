// Package acme obtains and renews TLS certificates from an ACME certificate authority (Let's
// Encrypt, ZeroSSL, a private step-ca, the Pebble test CA) for Verge's TLS listeners. It is
// Verge's one adapter to github.com/caddyserver/certmagic, which runs the ACME protocol
// (through github.com/mholt/acmez), keeps certificates in a Storage, renews them in the
// background and staples OCSP responses.
//
// A Manager outlives config generations: each generation Prepares a Site per listener with
// acme settings and Starts it once the generation is in effect. Challenges are answered by
// Verge's own listeners: HTTP-01 on the plain-HTTP listener through ServeHTTPChallenge,
// TLS-ALPN-01 in the handshake through Site.GetCertificate. Only the configured names are
// ever ordered: a handshake for another name gets no certificate (no on-demand issuance).
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"

	"github.com/verge-edge/verge/config"
)

// Options configure a Manager. The zero value keeps files under ".verge/acme".
type Options struct {
	// Storage keeps certificates, private keys, ACME accounts and locks. Nil means files
	// under Dir (private keys written with mode 0600, directories 0700). Nodes sharing a
	// Storage share certificates and take turns ordering them (NewKVStorage for a cluster).
	Storage certmagic.Storage
	// Dir is the directory of the file storage. Empty means ".verge/acme".
	Dir string
	// RenewInterval is how often certificates are checked for renewal and OCSP staples
	// refreshed. Zero means config.DefaultRenewInterval. Fixed for the Manager's life.
	RenewInterval time.Duration
	// DNS01Solver, when set, solves every challenge with DNS-01 instead of HTTP-01 and
	// TLS-ALPN-01 (wildcard names need it). &certmagic.DNS01Solver{DNSManager:
	// certmagic.DNSManager{DNSProvider: p}} with a libdns provider p is one. Nil means
	// HTTP-01 and TLS-ALPN-01.
	DNS01Solver acmez.Solver
	// OnEvent, when set, is called for each certmagic event ("cert_obtaining",
	// "cert_obtained", "cert_failed", ...) after it is logged.
	OnEvent func(event string, data map[string]any)
	// Logger receives the events and certmagic's own log. Nil means slog.Default().
	Logger *slog.Logger
}

// Manager manages the certificates of every ACME site of a process.
type Manager struct {
	opts    Options
	storage certmagic.Storage
	cache   *certmagic.Cache
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc

	mu    sync.Mutex
	sites map[string]*Site // started sites by listener name
}

// New returns a Manager; Close stops its renewals.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RenewInterval <= 0 {
		opts.RenewInterval = config.DefaultRenewInterval
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Join(config.DefaultWorkerData, "acme")
	}
	m := &Manager{opts: opts, storage: opts.Storage, log: opts.Logger, sites: map[string]*Site{}}
	if m.storage == nil {
		m.storage = &certmagic.FileStorage{Path: opts.Dir}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// cacheLocked returns the certificate cache, made at the first site (so a process without
// ACME runs no maintenance goroutine).
func (m *Manager) cacheLocked() *certmagic.Cache {
	if m.cache == nil {
		m.cache = certmagic.NewCache(certmagic.CacheOptions{
			GetConfigForCert:   m.configForCert,
			RenewCheckInterval: m.opts.RenewInterval,
			OCSPCheckInterval:  m.opts.RenewInterval,
			Logger:             zapLogger(m.log),
		})
	}
	return m.cache
}

// Storage returns the storage certificates are kept in.
func (m *Manager) Storage() certmagic.Storage { return m.storage }

// configForCert picks the configuration that maintains a cached certificate: the started
// site that manages one of its names, else any started site.
func (m *Manager) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var some *Site
	for _, s := range m.sites {
		some = s
		for _, n := range c.Names {
			if slices.Contains(s.domains, n) {
				return s.cfg, nil
			}
		}
	}
	if some == nil {
		return nil, errors.New("acme: no site manages this certificate")
	}
	return some.cfg, nil
}

// SiteConfig describes one listener's ACME site.
type SiteConfig struct {
	// Listener is the listener's name; a site replaces the previous one of the same name.
	Listener string
	// ACME is the listener's acme settings, defaults applied.
	ACME config.ACME
	// Domains are the names to manage.
	Domains []string
	// HTTPAddr is the address (host:port) of the plain-HTTP listener that answers HTTP-01.
	// Empty turns HTTP-01 off.
	HTTPAddr string
	// TLSAddr is the address of the TLS listener that answers TLS-ALPN-01.
	TLSAddr string
}

// Site is one listener's managed certificates.
type Site struct {
	m       *Manager
	sc      SiteConfig
	cfg     *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	domains []string
	ctx     context.Context
	cancel  context.CancelFunc
}

// Prepare builds the site of sc without starting it. A site whose settings equal those of
// the listener's running site shares its state (no new account, no new orders for the names
// it has).
func (m *Manager) Prepare(sc SiteConfig) (*Site, error) {
	s := &Site{m: m, sc: sc, domains: slices.Clone(sc.Domains)}
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return nil, errors.New("acme: manager closed")
	}
	old := m.sites[sc.Listener]
	cache := m.cacheLocked()
	m.mu.Unlock()
	if old != nil && sameSettings(old.sc, sc) {
		s.cfg, s.issuer = old.cfg, old.issuer
		return s, nil
	}
	a := sc.ACME
	var roots *x509.CertPool
	if a.CARoot != "" {
		var err error
		if roots, err = config.LoadCAPool(a.CARoot); err != nil {
			return nil, fmt.Errorf("acme: ca_root: %w", err)
		}
	}
	zl := zapLogger(m.log)
	s.cfg = certmagic.New(cache, certmagic.Config{
		RenewalWindowRatio: a.RenewalWindowRatio,
		Storage:            m.storage,
		Logger:             zl,
		OnEvent:            m.onEvent,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true,
		Profile:                 a.Profile,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    a.DisableHTTPChallenge || sc.HTTPAddr == "",
		DisableTLSALPNChallenge: a.DisableTLSALPNChallenge || sc.TLSAddr == "",
		DNS01Solver:             m.opts.DNS01Solver,
		Logger:                  zl,
	}
	// The challenge "servers" certmagic would start are Verge's own listeners: pointing its
	// ports at them makes certmagic find the address taken and leave the answering to
	// ServeHTTPChallenge and GetCertificate.
	if host, port, err := splitPort(sc.HTTPAddr); err == nil {
		tmpl.ListenHost, tmpl.AltHTTPPort = host, port
	}
	if host, port, err := splitPort(sc.TLSAddr); err == nil {
		tmpl.AltTLSALPNPort = port
		if tmpl.ListenHost == "" {
			tmpl.ListenHost = host
		}
	}
	s.issuer = certmagic.NewACMEIssuer(s.cfg, tmpl)
	s.cfg.Issuers = []certmagic.Issuer{s.issuer}
	return s, nil
}

func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}

func sameSettings(a, b SiteConfig) bool {
	return a.HTTPAddr == b.HTTPAddr && a.TLSAddr == b.TLSAddr && a.ACME.Email == b.ACME.Email &&
		a.ACME.CA == b.ACME.CA && a.ACME.CARoot == b.ACME.CARoot && a.ACME.Profile == b.ACME.Profile &&
		a.ACME.RenewalWindowRatio == b.ACME.RenewalWindowRatio &&
		a.ACME.DisableHTTPChallenge == b.ACME.DisableHTTPChallenge &&
		a.ACME.DisableTLSALPNChallenge == b.ACME.DisableTLSALPNChallenge
}

// Start makes s the listener's site: its names are loaded from storage or ordered in the
// background, and names the previous site had but s has not stop being renewed.
func (s *Site) Start() error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return errors.New("acme: manager closed")
	}
	old := m.sites[s.sc.Listener]
	s.ctx, s.cancel = context.WithCancel(m.ctx)
	if err := s.cfg.ManageAsync(s.ctx, s.domains); err != nil {
		s.cancel()
		return fmt.Errorf("acme: %w", err)
	}
	m.sites[s.sc.Listener] = s
	if old != nil {
		if old.cfg != s.cfg {
			old.cancel()
		}
		var gone []certmagic.SubjectIssuer
		for _, d := range old.domains {
			if !m.managedLocked(d) {
				gone = append(gone, certmagic.SubjectIssuer{Subject: d})
			}
		}
		if len(gone) > 0 {
			m.cache.RemoveManaged(gone)
		}
	}
	return nil
}

// Retain stops the sites of the listeners not named: their names stop being renewed unless
// another site manages them (the stored files stay). A reload that drops acme from a
// listener, or the listener, calls it.
func (m *Manager) Retain(listeners []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var stopped []*Site
	for name, s := range m.sites {
		if !slices.Contains(listeners, name) {
			delete(m.sites, name)
			s.cancel()
			stopped = append(stopped, s)
		}
	}
	var gone []certmagic.SubjectIssuer
	for _, s := range stopped {
		for _, d := range s.domains {
			if !m.managedLocked(d) {
				gone = append(gone, certmagic.SubjectIssuer{Subject: d})
			}
		}
	}
	if len(gone) > 0 {
		m.cache.RemoveManaged(gone)
	}
}

func (m *Manager) managedLocked(name string) bool {
	for _, s := range m.sites {
		if slices.Contains(s.domains, name) {
			return true
		}
	}
	return false
}

// Domains returns the names the site manages.
func (s *Site) Domains() []string { return slices.Clone(s.domains) }

// GetCertificate returns the managed certificate for the handshake's server name, or the
// TLS-ALPN-01 challenge certificate when the CA is validating. It never orders a
// certificate: a name the site does not manage gets an error.
func (s *Site) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cfg.GetCertificate(hello)
}

// Close stops renewing and the challenge answering of every site. Jobs certmagic has under
// way end soon after, on their cancelled context.
func (m *Manager) Close() {
	m.mu.Lock()
	m.cancel()
	m.sites = map[string]*Site{}
	cache := m.cache
	m.cache = nil
	m.mu.Unlock()
	if cache != nil {
		cache.Stop()
	}
}

func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		m.log.Info("acme: certificate obtained", "name", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		m.log.Error("acme: obtaining a certificate failed", "name", data["identifier"], "renewal", data["renewal"], "err", data["error"])
	case "cert_obtaining":
		m.log.Info("acme: ordering a certificate", "name", data["identifier"], "renewal", data["renewal"])
	}
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(event, data)
	}
	return nil
}

// StorageDir is where Verge keeps ACME state for the data directory dir.
func StorageDir(dataDir string) string { return filepath.Join(dataDir, "acme") }
