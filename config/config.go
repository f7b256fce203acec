// Package config reads Verge's YAML configuration: listeners, routes, upstream groups and the
// operational settings (admin API, access log, logging, metrics, shutdown). Decoding is strict:
// unknown keys, duplicate keys and type mismatches are errors, and every error names the file,
// line, column and field path, e.g.
//
//	verge.yaml:12:15: routes[2].upstream: unknown upstream group "api"
//
// Load and Parse decode, apply defaults (one function per type, see defaults.go) and validate
// (references, addresses, TLS files, duplicates). docs/configuration.md documents every field.
package config

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is one whole configuration file.
type Config struct {
	// Listeners are the addresses Verge accepts client connections on. At least one.
	Listeners []Listener `yaml:"listeners"`
	// L4 are the TCP listeners that proxy bytes to upstream groups without HTTP (l4.go).
	L4 []L4Listener `yaml:"l4"`
	// Routes map requests to actions, tried in order of specificity (see Route).
	Routes []Route `yaml:"routes"`
	// Upstreams are the named groups of origin servers routes send requests to.
	Upstreams []Upstream `yaml:"upstreams"`
	// Admin configures the admin API listener.
	Admin Admin `yaml:"admin"`
	// AccessLog configures the one-line-per-request log.
	AccessLog AccessLog `yaml:"access_log"`
	// Log configures the error/event log.
	Log Log `yaml:"log"`
	// Metrics configures the Prometheus endpoint on the admin listener.
	Metrics Metrics `yaml:"metrics"`
	// Shutdown configures graceful stops and upgrades.
	Shutdown Shutdown `yaml:"shutdown"`
	// UpstreamPool configures the connection pool shared by every upstream group. It is fixed
	// at start: a reload does not change it.
	UpstreamPool UpstreamPool `yaml:"upstream_pool"`
	// Cache configures where cached responses are kept (routes enable caching). It is fixed
	// at start: a reload does not change it.
	Cache CacheStorage `yaml:"cache"`
	// PIDFile is where `verge run` writes its process id, read by `verge reload`. Empty means
	// DefaultPIDFileFor(the config file), a name of its own for every config file.
	PIDFile string `yaml:"pid_file"`
	// Workers are the WebAssembly workers routes can send requests to (see workers.go).
	Workers []Worker `yaml:"workers"`
	// Overload turns on adaptive protection: when the process is overloaded it sheds
	// low-priority routes and new connections of the clients holding the most. Off when
	// every threshold is zero (the default).
	Overload Overload `yaml:"overload"`
	// RateLimits are named rate-limit rules that routes and listeners apply by name.
	RateLimits []RateLimit `yaml:"rate_limits"`
	// TrustedProxies is the trusted_proxies of every listener that sets none of its own.
	// Empty means none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// WorkerData is the directory holding KV namespaces, Durable Objects and compiled
	// worker code. Empty means $STATE_DIRECTORY when set (systemd's StateDirectory=), else
	// ".verge" next to the config file. It is fixed at start.
	WorkerData string `yaml:"worker_data"`
	// WorkerMemoryLimit caps the linear memory of all worker instances together (pooled,
	// running and Durable Objects'). Zero means half of the machine's memory or of the
	// process's cgroup limit, at least 256MiB (worker.DefaultMemoryLimit). At least 16MiB
	// when set. It is fixed at start.
	WorkerMemoryLimit Size `yaml:"worker_memory_limit"`
	// Cluster makes this Verge one node of many sharing state over NATS JetStream
	// (cluster.go). Unset means a single node with embedded storage.
	Cluster Cluster `yaml:"cluster"`
	// RequestID generates, passes upstream and logs request IDs (auth.go). Off by default.
	RequestID RequestID `yaml:"request_id"`
	// ContainerRuntime runs the workers' containers (containers.go).
	ContainerRuntime ContainerRuntime `yaml:"container_runtime"`
	// AI configures the model providers of ai_gateway routes and workers' AI bindings
	// (ai.go, docs/ai.md). Empty means none.
	AI AI `yaml:"ai"`

	// File is the name the config was loaded from.
	File string `yaml:"-"`
	// Source is the raw YAML text.
	Source []byte `yaml:"-"`

	pos map[string]Pos
}

// Listener is one listening socket.
type Listener struct {
	// Name identifies the listener in routes and logs. Empty means the address.
	Name string `yaml:"name"`
	// Address is host:port to listen on, e.g. "127.0.0.1:8080" or ":443". Required.
	Address string `yaml:"address"`
	// TLS, when set, makes the listener serve TLS. Nil means plain text.
	TLS *ListenerTLS `yaml:"tls"`
	// Protocols lists the HTTP versions served: "h1" and optionally "h2" (by ALPN over TLS,
	// by prior knowledge (h2c) in plain text). Empty means [h1, h2].
	Protocols []string `yaml:"protocols"`
	// Timeouts bound client connections.
	Timeouts ListenerTimeouts `yaml:"timeouts"`
	// Limits bound client requests.
	Limits ListenerLimits `yaml:"limits"`
	// MaxConns caps concurrent connections; further connections wait in the kernel's accept
	// queue. Zero means no cap.
	MaxConns int `yaml:"max_conns"`
	// TrustedProxies lists the peers (CIDRs or addresses, or "private_ranges") whose
	// forwarding fields (X-Forwarded-For, -Proto, -Host, X-Real-IP, Forwarded) are kept and
	// appended to, and through whose X-Forwarded-For the client address is resolved. Empty
	// means the top-level trusted_proxies; both empty means no peer is trusted, and every
	// client's forwarding fields are replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TrustForwarded trusts every peer, as if trusted_proxies held every address; set it only
	// when nothing but a proxy can reach the listener. Default false. Exclusive with
	// TrustedProxies.
	TrustForwarded bool `yaml:"trust_forwarded"`
	// ForwardedHeader also sends the standard Forwarded field (RFC 7239), appended to a
	// trusted proxy's. Default false: X-Forwarded-*/X-Real-IP only; an untrusted client's
	// Forwarded is dropped either way.
	ForwardedHeader bool `yaml:"forwarded_header"`
	// HTTP3 serves HTTP/3 over QUIC on the UDP port with the same number (needs tls) and
	// advertises it with Alt-Svc on HTTP/1.1 and h2 responses. Zero means off.
	HTTP3 ListenerHTTP3 `yaml:"http3"`
	// IPRules allow and deny clients by address as they connect. Nil means all may.
	IPRules *IPRules `yaml:"ip_rules"`
	// RateLimits names the rate_limits rules applied to every request of the listener that a
	// route matches, before the route's own.
	RateLimits []string `yaml:"rate_limits"`
	// RedirectHTTPS answers every request on this plain-HTTP listener with a 308 redirect to
	// the same URL over https (on the first TLS listener's port), except ACME HTTP-01
	// challenges. Default false.
	RedirectHTTPS bool `yaml:"redirect_https"`
	// ProxyProtocol reads a PROXY protocol header from trusted peers (proxyprotocol.go). Nil
	// means none is read.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`
}

// ListenerHTTP3 configures HTTP/3 on a TLS listener. Zero fields take the h3 package's
// defaults, given in parentheses (docs/http3.md).
type ListenerHTTP3 struct {
	// Enabled serves HTTP/3. Default false.
	Enabled bool `yaml:"enabled"`
	// MaxStreams is the number of concurrent requests per QUIC connection (128).
	MaxStreams int `yaml:"max_streams"`
	// IdleTimeout closes a connection without network activity for this long (30s).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// HandshakeTimeout bounds a QUIC handshake (10s).
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// StreamWindow is how far a request stream's receive window may grow (2 MiB).
	StreamWindow Size `yaml:"stream_window"`
	// ConnWindow is how far a connection's receive window may grow (8 MiB).
	ConnWindow Size `yaml:"conn_window"`
	// MaxHandshakes caps handshakes in flight; more are refused (1024).
	MaxHandshakes int `yaml:"max_handshakes"`
	// RetryThreshold is the number of handshakes in flight from which clients must validate
	// their address with a QUIC Retry (a quarter of max_handshakes); -1 means always.
	RetryThreshold int `yaml:"retry_threshold"`
	// ZeroRTT accepts 0-RTT early data: such requests carry Early-Data: 1 upstream and
	// non-idempotent ones are answered 425. Default false.
	ZeroRTT bool `yaml:"zero_rtt"`
	// QlogDir, when set, writes one qlog file per QUIC connection there, for debugging.
	// Empty means the VERGE_QLOG_DIR environment variable, or none.
	QlogDir string `yaml:"qlog_dir"`
	// AltSvcMaxAge is the ma= of the Alt-Svc field advertising HTTP/3 (24h).
	AltSvcMaxAge Duration `yaml:"alt_svc_max_age"`
}

// ListenerTLS configures TLS on a listener.
type ListenerTLS struct {
	// Certificates are the certificate/key pairs; the one whose names match the client's SNI
	// is used (exact names before wildcards), the first one when nothing matches. At least one,
	// unless ACME is set.
	Certificates []Certificate `yaml:"certificates"`
	// ACME obtains and renews certificates automatically (acme.go, docs/acme.md); configured
	// certificates are preferred for the names they cover. Nil means off.
	ACME *ACME `yaml:"acme"`
	// MinVersion is "1.2" or "1.3". Empty means "1.2".
	MinVersion string `yaml:"min_version"`
	// SessionTickets enables TLS session resumption by tickets. Nil means true.
	SessionTickets *bool `yaml:"session_tickets"`
	// SessionTicketRotation is how often a new ticket key is made; the previous two keys stay
	// valid for decryption. Zero means 12h.
	SessionTicketRotation Duration `yaml:"session_ticket_rotation"`
	// ClientAuth, when set, asks clients for certificates (mutual TLS).
	ClientAuth *ClientAuth `yaml:"client_auth"`
}

// Certificate is a PEM certificate chain and its private key.
type Certificate struct {
	// Cert is the path of the PEM certificate chain. Required.
	Cert string `yaml:"cert"`
	// Key is the path of the PEM private key. Required.
	Key string `yaml:"key"`
}

// ClientAuth configures client certificate verification.
type ClientAuth struct {
	// CA is the path of the PEM CA bundle client certificates must chain to. Required.
	CA string `yaml:"ca"`
	// Mode is "require" (a valid certificate is required) or "request" (verified if sent).
	// Empty means "require".
	Mode string `yaml:"mode"`
}

// ListenerTimeouts bound client connections. Zero fields take the defaults below.
type ListenerTimeouts struct {
	// ReadHeader bounds reading a request head. Zero means 10s.
	ReadHeader Duration `yaml:"read_header"`
	// Idle is how long a keep-alive connection may wait for its next request. Zero means 60s.
	Idle Duration `yaml:"idle"`
	// BodyRead bounds each wait for request body bytes, on HTTP/1.1, HTTP/2 and HTTP/3. Zero
	// means 60s; negative means no limit (long-lived gRPC client streams).
	BodyRead SignedDuration `yaml:"body_read"`
	// Write bounds each write to the client. Zero means 60s.
	Write Duration `yaml:"write"`
}

// ListenerLimits bound what a client may send. Zero fields take the defaults below.
type ListenerLimits struct {
	// MaxRequestLine bounds the HTTP/1 request line (414 beyond). Zero means 8KiB.
	MaxRequestLine Size `yaml:"max_request_line"`
	// MaxHeaderBytes bounds a request head (431 beyond). Zero means 32KiB.
	MaxHeaderBytes Size `yaml:"max_header_bytes"`
	// MaxHeaders bounds the number of header fields (431 beyond). Zero means 100.
	MaxHeaders int `yaml:"max_headers"`
	// MaxBody bounds a request body (413 beyond). Zero means no limit.
	MaxBody Size `yaml:"max_body"`
	// MaxConnsPerClient caps the concurrent connections of one client address (the
	// connection's peer, cut to client_ipv4_prefix/client_ipv6_prefix bits); more are shed
	// (shed_response). Zero means no cap.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// ConnRatePerClient caps one client address's new connections per second (bursts of as
	// many); more are shed. Zero means no cap.
	ConnRatePerClient int `yaml:"conn_rate_per_client"`
	// AcceptRate caps the listener's new connections per second, all clients together
	// (bursts of as many); more are shed. Zero means no cap.
	AcceptRate int `yaml:"accept_rate"`
	// MaxRequestsPerClient caps one client address's concurrent requests over all its
	// HTTP/1.1 connections and HTTP/2 streams; more are answered 429 with Retry-After: 1.
	// Zero means no cap.
	MaxRequestsPerClient int `yaml:"max_requests_per_client"`
	// MaxBodyBytesPerClient caps the request body bytes one client address may have in
	// flight: the declared lengths of its concurrent requests summed (a body of unknown
	// length counts as max_body, or 1MiB without one); a request passing it gets 429 before
	// its body is read. Zero means no cap.
	MaxBodyBytesPerClient Size `yaml:"max_body_bytes_per_client"`
	// ClientIPv4Prefix and ClientIPv6Prefix are the bits of a peer address that name one
	// client for the per-client caps. Zero means 32 and 64.
	ClientIPv4Prefix int `yaml:"client_ipv4_prefix"`
	ClientIPv6Prefix int `yaml:"client_ipv6_prefix"`
	// ClientExempt lists addresses and CIDR prefixes the per-client caps do not apply to
	// (the proxies in front, health checkers).
	ClientExempt StringList `yaml:"client_exempt"`
	// ShedOverMaxConns sheds connections beyond the listener's max_conns instead of leaving
	// them waiting in the kernel's backlog.
	ShedOverMaxConns bool `yaml:"shed_over_max_conns"`
	// ShedResponse is what a shed connection gets: close (closed at once, with a reset; the
	// cheapest) or 503 (a 503 with Retry-After: 1 on plain-text listeners, then closed; TLS
	// listeners close). Empty means close.
	ShedResponse string `yaml:"shed_response"`
}

// Route maps matching requests to one action. A request is served by the most specific
// matching route: exact host before wildcard host before any host; then exact path before
// the longest path prefix; then routes with more conditions (methods, headers); then file
// order.
type Route struct {
	// Name identifies the route in metrics and the access log. Empty means "route<N>" with N
	// its index in the file.
	Name string `yaml:"name"`
	// Listeners restricts the route to the named listeners. Empty means every listener.
	Listeners []string `yaml:"listeners"`
	// Match selects requests. Empty matches every request.
	Match Match `yaml:"match"`
	// Upstream names the upstream group to proxy to. Exactly one of Upstream, Redirect,
	// Respond and Worker is required (Upstream may join Worker as its fallback).
	Upstream string `yaml:"upstream"`
	// Worker names the worker that answers the route's requests.
	Worker string `yaml:"worker"`
	// WorkerOnError is what a failed worker's request gets when no response was sent yet:
	// "error" (a 5xx status) or "origin" (passed to the route's upstream). Empty means
	// "error".
	WorkerOnError string `yaml:"worker_on_error"`
	// Redirect answers with a redirect.
	Redirect *Redirect `yaml:"redirect"`
	// Respond answers with a fixed response.
	Respond *Respond `yaml:"respond"`
	// Files serves static files from a directory (files.go, docs/files.md).
	Files *Files `yaml:"files"`
	// AIGateway serves the OpenAI-compatible API in front of the ai providers (ai.go,
	// docs/ai.md).
	AIGateway *AIGateway `yaml:"ai_gateway"`
	// Compress compresses the route's responses by Accept-Encoding (files.go). Nil means none.
	Compress *Compress `yaml:"compress"`
	// RequestHeaders changes the request sent upstream.
	RequestHeaders HeaderOps `yaml:"request_headers"`
	// ResponseHeaders changes the response sent to the client (also for redirect and respond).
	ResponseHeaders HeaderOps `yaml:"response_headers"`
	// Timeouts override the upstream group's timeouts for this route.
	Timeouts UpstreamTimeouts `yaml:"timeouts"`
	// Retries is how many times a failed upstream attempt may be retried on another server
	// (connect failures always; other failures only for idempotent requests without a body
	// already sent). Nil means 2; 0 disables retries.
	Retries *int `yaml:"retries"`
	// Cache enables and configures HTTP caching of the route's responses (an upstream's or a
	// worker's). Nil means none.
	Cache *RouteCache `yaml:"cache"`
	// HTMLRewrite rewrites the route's text/html responses as they stream (docs/phases.md,
	// "HTML rewriting"), in order. Empty means none.
	HTMLRewrite []HTMLRewriteRule `yaml:"html_rewrite"`
	// Upgrades lists the protocols (Upgrade tokens) a request may switch to, e.g. [websocket].
	// A request offering another protocol is forwarded as a plain request without Upgrade.
	// h2c, h2 and http are refused: they would hand the client a connection to the origin
	// past the proxy. Nil means [websocket]; an empty list allows none.
	Upgrades *StringList `yaml:"upgrades"`
	// AllowTrace forwards TRACE requests. Default false: TRACE is answered 405 with Allow.
	AllowTrace bool `yaml:"allow_trace"`
	// Priority is normal or low; while the process is overloaded (top-level overload),
	// requests of low routes are answered 503 with Retry-After. Empty means normal.
	Priority string `yaml:"priority"`
	// IPRules allow and deny the route's clients by address (403). Nil means all may.
	IPRules *IPRules `yaml:"ip_rules"`
	// RateLimits names the rate_limits rules applied to the route's requests, after the
	// listener's, in order; the first that refuses a request answers it.
	RateLimits []string `yaml:"rate_limits"`
	// Auth authenticates the route's requests (basic, jwt or forward; auth.go). Nil means none.
	Auth *RouteAuth `yaml:"auth"`
	// CORS answers cross-origin preflights and marks allowed responses. Nil means none.
	CORS *CORS `yaml:"cors"`
	// Rewrite changes the path sent upstream. Nil means none.
	Rewrite *Rewrite `yaml:"rewrite"`
}

// Match is the set of conditions a request must meet; all given conditions must hold.
type Match struct {
	// Host lists host names (a string or a list), exact ("example.com") or with a leading
	// wildcard label ("*.example.com", which does not match "example.com" itself). Compared
	// case-insensitively without the port. Empty means any host.
	Host StringList `yaml:"host"`
	// Path matches the request path exactly (without the query). Exclusive with PathPrefix.
	Path string `yaml:"path"`
	// PathPrefix matches paths that start with it. "/api" matches "/api", "/api/x" and
	// "/apix"; end it with "/" to match a segment only.
	PathPrefix string `yaml:"path_prefix"`
	// Methods lists the accepted methods (a string or a list). Empty means any method.
	Methods StringList `yaml:"methods"`
	// Headers maps field names to the exact value required. A value of "*" requires only that
	// the field be present.
	Headers map[string]string `yaml:"headers"`
}

// Redirect answers a request with a redirect.
type Redirect struct {
	// To is the Location. It may use {scheme}, {host}, {path}, {query} and {uri} (path with
	// query), e.g. "https://{host}{uri}". Required.
	To string `yaml:"to"`
	// Status is 301, 302, 303, 307 or 308. Zero means 302.
	Status int `yaml:"status"`
}

// Respond answers a request with a fixed response.
type Respond struct {
	// Status is the status code. Zero means 200.
	Status int `yaml:"status"`
	// Body is the response body. Empty means none.
	Body string `yaml:"body"`
	// Headers are fields added to the response. Content-Type defaults to
	// "text/plain; charset=utf-8" when Body is not empty.
	Headers map[string]string `yaml:"headers"`
}

// HeaderOps change a header: first Remove, then Set (replacing every field of the name),
// then Add (appending).
type HeaderOps struct {
	// Add appends fields.
	Add map[string]string `yaml:"add"`
	// Set replaces fields.
	Set map[string]string `yaml:"set"`
	// Remove deletes fields by name.
	Remove []string `yaml:"remove"`
	// Rules are further operations applied, in order, only when their condition holds.
	Rules []HeaderRule `yaml:"rules"`
}

// Upstream is a named group of origin servers.
type Upstream struct {
	// Name is how routes refer to the group. Required, unique.
	Name string `yaml:"name"`
	// Servers is a static list of servers. Exactly one of Servers and DNS is required.
	Servers []Server `yaml:"servers"`
	// DNS discovers the servers by DNS.
	DNS *DNS `yaml:"dns"`
	// Policy chooses a server per request: round_robin, weighted (smooth weighted round
	// robin), random, p2c (power of two choices by in-flight requests), least_conn or
	// consistent_hash. Empty means round_robin.
	Policy string `yaml:"policy"`
	// HashKey is what consistent_hash hashes: "client_ip", "path" or "header:<Name>". Empty
	// means client_ip.
	HashKey string `yaml:"hash_key"`
	// HealthCheck enables active health checks. Nil means none.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// Passive configures ejection after consecutive failed requests.
	Passive Passive `yaml:"passive"`
	// TLS, when set, connects to the servers over TLS.
	TLS *UpstreamTLS `yaml:"tls"`
	// Protocol is h1 (HTTP/1.1), h2 (HTTP/2 over TLS, needs tls), h2c (HTTP/2 in plain
	// text, prior knowledge) or h3 (HTTP/3 over QUIC to the servers' UDP ports; TLS always,
	// verified with the system roots when tls is not set). Empty means h1.
	Protocol string `yaml:"protocol"`
	// Host, when set, replaces the Host header sent to the servers.
	Host string `yaml:"host"`
	// Pool configures pooled connections to the group's servers.
	Pool Pool `yaml:"pool"`
	// Timeouts bound each upstream exchange.
	Timeouts UpstreamTimeouts `yaml:"timeouts"`
	// SendProxyProtocol is "v1" or "v2": each new connection to a server starts with a PROXY
	// protocol header naming the client (proxyprotocol.go). Empty means none.
	SendProxyProtocol string `yaml:"send_proxy_protocol"`
}

// Server is one static origin server.
type Server struct {
	// Address is host:port. Required.
	Address string `yaml:"address"`
	// Weight is the server's share for the weighted and consistent_hash policies, 1 to 1000.
	// Zero means 1.
	Weight int `yaml:"weight"`
}

// DNS discovers servers by DNS.
type DNS struct {
	// Name is the host name to resolve. Required.
	Name string `yaml:"name"`
	// Port is the server port for A/AAAA records. Required unless Type is SRV.
	Port int `yaml:"port"`
	// Type is "A" (IPv4), "AAAA" (IPv6), "A/AAAA" (both) or "SRV" (targets, ports and
	// weights from SRV records of Name). Empty means "A/AAAA".
	Type string `yaml:"type"`
	// Refresh is the time between lookups. Zero means 30s.
	Refresh Duration `yaml:"refresh"`
}

// HealthCheck configures active health checks.
type HealthCheck struct {
	// Type is tcp (connect), http (a request; over TLS when the group uses TLS) or tls
	// (connect and handshake). Empty means tcp.
	Type string `yaml:"type"`
	// Path is the HTTP request path. Empty means "/".
	Path string `yaml:"path"`
	// ExpectStatus lists passing HTTP statuses: codes, ranges and classes, comma-separated
	// ("200", "200-299", "2xx,304"). Empty means "200-399".
	ExpectStatus string `yaml:"expect_status"`
	// Interval is the time between checks. Zero means 5s.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one check. Zero means 2s.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many passed checks in a row bring a server up. Zero means 2.
	Rise int `yaml:"rise"`
	// Fall is how many failed checks in a row take a server down. Zero means 3.
	Fall int `yaml:"fall"`
}

// Passive configures passive health: ejecting a server after consecutive failed requests.
// The last available server of a group is never ejected.
type Passive struct {
	// MaxFails is how many consecutive failures eject a server. Zero means 3; negative
	// disables ejection (and a reload to a negative value ends the ejections in force).
	MaxFails int `yaml:"max_fails"`
	// FailTimeout is both the window in which failures count as consecutive and how long an
	// ejected server gets no requests. Zero means 10s.
	FailTimeout Duration `yaml:"fail_timeout"`
}

// UpstreamTLS configures TLS to origin servers.
type UpstreamTLS struct {
	// Verify checks the servers' certificates. Nil means true.
	Verify *bool `yaml:"verify"`
	// CA is a PEM bundle to verify servers with. Empty means the system roots.
	CA string `yaml:"ca"`
	// ServerName is sent as SNI and verified. Empty means the group's host, else the
	// server's host.
	ServerName string `yaml:"server_name"`
	// ClientCert and ClientKey are a PEM certificate and key presented to the servers.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
}

// Pool configures pooled connections of one group.
type Pool struct {
	// IdleTimeout is how long an unused connection is kept. Zero means 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// UpstreamPool configures the connection pool shared by all groups.
type UpstreamPool struct {
	// MaxIdlePerServer caps idle HTTP/1 connections kept per server. Zero means 128.
	MaxIdlePerServer int `yaml:"max_idle_per_server"`
	// MaxIdle caps idle HTTP/1 connections across all servers. Zero means 4096.
	MaxIdle int `yaml:"max_idle"`
}

// UpstreamTimeouts bound upstream exchanges. Zero fields take the defaults (or, on a route,
// the group's values).
type UpstreamTimeouts struct {
	// Connect bounds dialing and the TLS handshake. Zero means 5s.
	Connect Duration `yaml:"connect"`
	// Read bounds each wait for response bytes, including the response head. Zero means 60s.
	Read Duration `yaml:"read"`
	// Write bounds each write to the server. Zero means 60s.
	Write Duration `yaml:"write"`
	// Total bounds the whole exchange including the body. Zero means no limit.
	Total Duration `yaml:"total"`
}

// Admin configures the admin API: current config, config loading, reload, upstream health and
// drain, /healthz, /readyz and /metrics.
type Admin struct {
	// Disabled turns the admin API off.
	Disabled bool `yaml:"disabled"`
	// Address is host:port. Empty means "127.0.0.1:9901".
	Address string `yaml:"address"`
	// Token, when set, is required as "Authorization: Bearer <token>" on every endpoint but
	// /healthz. At least MinAdminTokenBytes long. Exclusive with TokenFile. Empty (with no
	// TokenFile) is allowed only on a loopback Address.
	Token string `yaml:"token"`
	// TokenFile is a file whose first line is the token.
	TokenFile string `yaml:"token_file"`
	// AllowedHosts are extra host names (optionally with ":port") the API accepts in the Host
	// and Origin fields, e.g. the name of a proxy in front of it. The listen address and, on a
	// loopback or wildcard address, localhost, 127.0.0.1 and [::1] with the admin port are
	// always accepted. Empty means none beyond those.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Dashboard serves the web dashboard at /dashboard/ on the admin listener (docs/dashboard.md).
	// Nil means true.
	Dashboard *bool `yaml:"dashboard"`
}

// MinAdminTokenBytes is the shortest admin token accepted.
const MinAdminTokenBytes = 16

// AccessLog configures the access log.
type AccessLog struct {
	// Output is "stdout", "stderr", "off" or a file path (appended to, reopened on reload).
	// Empty means "stdout".
	Output string `yaml:"output"`
	// Format is "json" (one object per line), "text" (logfmt), "combined" (NGINX/Apache
	// combined) or "template" (Template). Empty means "json".
	Format string `yaml:"format"`
	// Template is the line of format template: text with {field} names (see
	// docs/observability.md), e.g. "{client} {method} {uri} {status} {duration_ms}".
	Template string `yaml:"template"`
	// Fields lists the fields written, in order (see docs/configuration.md for the names).
	// Empty means all of them.
	Fields []string `yaml:"fields"`
}

// Log configures the error log: start-up, reloads, upstream failures, health changes.
type Log struct {
	// Level is debug, info, warn or error. Empty means info.
	Level string `yaml:"level"`
	// Format is text or json. Empty means text.
	Format string `yaml:"format"`
	// Output is "stderr", "stdout" or a file path. Empty means "stderr". It is fixed at start.
	Output string `yaml:"output"`
}

// Metrics configures the Prometheus endpoint, served on the admin listener at /metrics.
type Metrics struct {
	// Enabled serves /metrics. Nil means true.
	Enabled *bool `yaml:"enabled"`
}

// Shutdown configures graceful stops.
type Shutdown struct {
	// GracePeriod is how long SIGTERM, SIGQUIT or an upgrade waits for in-flight requests
	// before closing connections. Zero means 30s.
	GracePeriod Duration `yaml:"grace_period"`
}

// Load reads, decodes, defaults and validates the config file at path. The error, if any,
// is an ErrorList.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes, defaults and validates data; name is used in error messages and to resolve
// relative file paths (certificates, token files) against its directory. The error, if any,
// is an ErrorList.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{File: name, Source: bytes.Clone(data)}
	if err := c.decode(data); err != nil {
		return nil, err
	}
	c.resolvePaths()
	c.setDefaults()
	if errs := c.validate(); len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return c, nil
}

func (c *Config) decode(data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return ErrorList{&Error{File: c.File, Pos: yamlErrPos(err), Msg: yamlErrMsg(err)}}
	}
	d := &decoder{file: c.File, pos: map[string]Pos{}}
	if len(root.Content) == 0 {
		return ErrorList{&Error{File: c.File, Msg: "empty config"}}
	}
	d.decode(&root, reflect.ValueOf(c).Elem(), "")
	c.pos = d.pos
	if len(d.errs) > 0 {
		d.errs.sort()
		return d.errs
	}
	return nil
}

// at returns the position of path, or of its nearest recorded ancestor.
func (c *Config) at(path string) Pos {
	for {
		if p, ok := c.pos[path]; ok {
			return p
		}
		i := max(lastIndexByte(path, '.'), lastIndexByte(path, '['))
		if i <= 0 {
			return c.pos[""]
		}
		path = path[:i]
	}
}

func lastIndexByte(s string, b byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// yamlErrPos extracts the line from a YAML syntax error ("yaml: line 3: ...").
func yamlErrPos(err error) Pos {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, "line "); ok {
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end > 0 {
			if n, err := strconv.Atoi(rest[:end]); err == nil {
				return Pos{Line: n}
			}
		}
	}
	return Pos{}
}

// yamlErrMsg strips the "yaml: line N: " prefix the position already says.
func yamlErrMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			msg = after
		}
	}
	return "invalid YAML: " + msg
}
