package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults, applied by the setDefaults methods (one per config type) and documented in
// docs/configuration.md.
const (
	DefaultAdminAddress          = "127.0.0.1:9901"
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 60 * time.Second
	DefaultBodyReadTimeout       = 60 * time.Second
	DefaultWriteTimeout          = 60 * time.Second
	DefaultMaxRequestLine        = 8 << 10
	DefaultMaxHeaderBytes        = 32 << 10
	DefaultMaxHeaders            = 100
	DefaultSessionTicketRotation = 12 * time.Hour
	DefaultRetries               = 2
	DefaultRedirectStatus        = 302
	DefaultConnectTimeout        = 5 * time.Second
	DefaultUpstreamReadTimeout   = 60 * time.Second
	DefaultUpstreamWriteTimeout  = 60 * time.Second
	DefaultPoolIdleTimeout       = 60 * time.Second
	DefaultMaxIdlePerServer      = 128
	DefaultMaxIdle               = 4096
	DefaultDNSRefresh            = 30 * time.Second
	DefaultCheckInterval         = 5 * time.Second
	DefaultCheckTimeout          = 2 * time.Second
	DefaultRise                  = 2
	DefaultFall                  = 3
	DefaultExpectStatus          = "200-399"
	DefaultMaxFails              = 3
	DefaultFailTimeout           = 10 * time.Second
	DefaultGracePeriod           = 30 * time.Second
)

// DefaultPIDFile is where `verge run` writes its pid when the config sets no pid_file and
// the config does not come from a file: $XDG_RUNTIME_DIR/verge.pid when XDG_RUNTIME_DIR is
// set (systemd sets it for user services; RuntimeDirectory= gives system services
// /run/<dir>), else <os.TempDir()>/verge-<uid>.pid.
func DefaultPIDFile() string { return pidFileIn("verge") }

// DefaultPIDFileFor is the pid file of a server run from the config file at path when the
// config sets no pid_file: in the directory DefaultPIDFile uses, named after a hash of the
// file's absolute path (verge-<hash>.pid, or verge-<uid>-<hash>.pid in the temporary
// directory), so that servers run from different config files never share one and
// `verge reload -c FILE` finds the server run with the same FILE.
func DefaultPIDFileFor(path string) string {
	if path == "" {
		return DefaultPIDFile()
	}
	p, err := filepath.Abs(path)
	if err != nil {
		p = path
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	sum := sha256.Sum256([]byte(p))
	return pidFileIn("verge-" + hex.EncodeToString(sum[:6]))
}

func pidFileIn(name string) string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, name+".pid")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("verge-%d%s.pid", os.Getuid(), strings.TrimPrefix(name, "verge")))
}

func (c *Config) setDefaults() {
	for i := range c.Listeners {
		c.Listeners[i].setDefaults()
	}
	for i := range c.Routes {
		c.Routes[i].setDefaults(i)
	}
	for i := range c.L4 {
		c.L4[i].setDefaults()
	}
	for i := range c.Upstreams {
		c.Upstreams[i].setDefaults()
	}
	c.Admin.setDefaults()
	c.AccessLog.setDefaults()
	c.Log.setDefaults()
	c.Metrics.setDefaults()
	c.Shutdown.setDefaults()
	c.UpstreamPool.setDefaults()
	c.Cache.setDefaults()
	c.setWorkerDefaults()
	if c.Overload.ConnsPerClient == 0 {
		c.Overload.ConnsPerClient = 4
	}
	for i := range c.RateLimits {
		c.RateLimits[i].setDefaults()
	}
	c.Cluster.setDefaults(c.WorkerData)
	c.setAuthDefaults()
	c.setAIDefaults()
	for i := range c.Routes {
		if rc := c.Routes[i].Cache; rc != nil {
			rc.setDefaults()
		}
	}
	if c.PIDFile == "" {
		c.PIDFile = DefaultPIDFileFor(c.File)
	}
}

func (l *Listener) setDefaults() {
	if l.Name == "" {
		l.Name = l.Address
	}
	if len(l.Protocols) == 0 {
		l.Protocols = []string{"h1", "h2"}
	}
	if l.TLS != nil {
		l.TLS.setDefaults()
	}
	if l.ProxyProtocol != nil {
		l.ProxyProtocol.setDefaults()
	}
	t := &l.Timeouts
	t.ReadHeader = orDuration(t.ReadHeader, DefaultReadHeaderTimeout)
	t.Idle = orDuration(t.Idle, DefaultIdleTimeout)
	if t.BodyRead == 0 {
		t.BodyRead = SignedDuration(DefaultBodyReadTimeout)
	}
	t.Write = orDuration(t.Write, DefaultWriteTimeout)
	m := &l.Limits
	if m.MaxRequestLine == 0 {
		m.MaxRequestLine = DefaultMaxRequestLine
	}
	if m.MaxHeaderBytes == 0 {
		m.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if m.MaxHeaders == 0 {
		m.MaxHeaders = DefaultMaxHeaders
	}
}

func (t *ListenerTLS) setDefaults() {
	if t.MinVersion == "" {
		t.MinVersion = "1.2"
	}
	if t.SessionTickets == nil {
		t.SessionTickets = ptr(true)
	}
	t.SessionTicketRotation = orDuration(t.SessionTicketRotation, DefaultSessionTicketRotation)
	if t.ClientAuth != nil && t.ClientAuth.Mode == "" {
		t.ClientAuth.Mode = "require"
	}
	if t.ACME != nil {
		t.ACME.setDefaults()
	}
}

func (r *Route) setDefaults(index int) {
	if r.Name == "" {
		r.Name = fmt.Sprintf("route%d", index)
	}
	if r.Retries == nil {
		r.Retries = ptr(DefaultRetries)
	}
	if r.Upgrades == nil {
		r.Upgrades = &StringList{"websocket"}
	}
	for i, h := range r.Match.Host {
		r.Match.Host[i] = strings.ToLower(h)
	}
	if r.Redirect != nil && r.Redirect.Status == 0 {
		r.Redirect.Status = DefaultRedirectStatus
	}
	if r.Respond != nil && r.Respond.Status == 0 {
		r.Respond.Status = 200
	}
}

func (u *Upstream) setDefaults() {
	if u.Policy == "" {
		u.Policy = "round_robin"
	}
	if u.Policy == "consistent_hash" && u.HashKey == "" {
		u.HashKey = "client_ip"
	}
	if u.Protocol == "" {
		u.Protocol = "h1"
	}
	for i := range u.Servers {
		if u.Servers[i].Weight == 0 {
			u.Servers[i].Weight = 1
		}
	}
	if u.DNS != nil {
		if u.DNS.Type == "" {
			u.DNS.Type = "A/AAAA"
		}
		u.DNS.Refresh = orDuration(u.DNS.Refresh, DefaultDNSRefresh)
	}
	if h := u.HealthCheck; h != nil {
		if h.Type == "" {
			h.Type = "tcp"
		}
		if h.Path == "" {
			h.Path = "/"
		}
		if h.ExpectStatus == "" {
			h.ExpectStatus = DefaultExpectStatus
		}
		h.Interval = orDuration(h.Interval, DefaultCheckInterval)
		h.Timeout = orDuration(h.Timeout, DefaultCheckTimeout)
		if h.Rise == 0 {
			h.Rise = DefaultRise
		}
		if h.Fall == 0 {
			h.Fall = DefaultFall
		}
	}
	if u.Passive.MaxFails == 0 {
		u.Passive.MaxFails = DefaultMaxFails
	}
	u.Passive.FailTimeout = orDuration(u.Passive.FailTimeout, DefaultFailTimeout)
	if u.TLS != nil && u.TLS.Verify == nil {
		u.TLS.Verify = ptr(true)
	}
	u.Pool.IdleTimeout = orDuration(u.Pool.IdleTimeout, DefaultPoolIdleTimeout)
	t := &u.Timeouts
	t.Connect = orDuration(t.Connect, DefaultConnectTimeout)
	t.Read = orDuration(t.Read, DefaultUpstreamReadTimeout)
	t.Write = orDuration(t.Write, DefaultUpstreamWriteTimeout)
}

func (a *Admin) setDefaults() {
	if a.Address == "" {
		a.Address = DefaultAdminAddress
	}
}

func (a *AccessLog) setDefaults() {
	if a.Output == "" {
		a.Output = "stdout"
	}
	if a.Format == "" {
		a.Format = "json"
	}
}

func (l *Log) setDefaults() {
	if l.Level == "" {
		l.Level = "info"
	}
	if l.Format == "" {
		l.Format = "text"
	}
	if l.Output == "" {
		l.Output = "stderr"
	}
}

func (m *Metrics) setDefaults() {
	if m.Enabled == nil {
		m.Enabled = ptr(true)
	}
}

func (s *Shutdown) setDefaults() {
	s.GracePeriod = orDuration(s.GracePeriod, DefaultGracePeriod)
}

func (p *UpstreamPool) setDefaults() {
	if p.MaxIdlePerServer == 0 {
		p.MaxIdlePerServer = DefaultMaxIdlePerServer
	}
	if p.MaxIdle == 0 {
		p.MaxIdle = DefaultMaxIdle
	}
}

// resolvePaths makes relative file paths relative to the config file's directory.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.File)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.L4 {
		if t := c.L4[i].TLS; t != nil {
			for j := range t.Certificates {
				abs(&t.Certificates[j].Cert)
				abs(&t.Certificates[j].Key)
			}
			if t.ClientAuth != nil {
				abs(&t.ClientAuth.CA)
			}
		}
	}
	for i := range c.Listeners {
		if t := c.Listeners[i].TLS; t != nil {
			for j := range t.Certificates {
				abs(&t.Certificates[j].Cert)
				abs(&t.Certificates[j].Key)
			}
			if t.ClientAuth != nil {
				abs(&t.ClientAuth.CA)
			}
			if t.ACME != nil {
				abs(&t.ACME.CARoot)
			}
		}
	}
	for i := range c.Upstreams {
		if t := c.Upstreams[i].TLS; t != nil {
			abs(&t.CA)
			abs(&t.ClientCert)
			abs(&t.ClientKey)
		}
	}
	c.resolveAIPaths(abs)
	for i := range c.Listeners {
		c.Listeners[i].IPRules.resolvePaths(abs)
	}
	for i := range c.Routes {
		c.Routes[i].IPRules.resolvePaths(abs)
		if f := c.Routes[i].Files; f != nil {
			abs(&f.Root)
		}
	}
	abs(&c.Admin.TokenFile)
	abs(&c.PIDFile)
	c.resolveWorkerPaths(dir)
	c.Cluster.resolvePaths(abs)
	c.resolveAuthPaths(abs)
	if c.Cache.Disk != nil {
		abs(&c.Cache.Disk.Path)
	}
	if o := c.Log.Output; o != "" && o != "stdout" && o != "stderr" {
		abs(&c.Log.Output)
	}
	if o := c.AccessLog.Output; o != "" && o != "stdout" && o != "stderr" && o != "off" {
		abs(&c.AccessLog.Output)
	}
}

func orDuration(d Duration, def time.Duration) Duration {
	if d == 0 {
		return Duration(def)
	}
	return d
}

func ptr[T any](v T) *T { return &v }
