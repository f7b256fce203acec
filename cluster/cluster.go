// Package cluster connects a Verge node to the other nodes through NATS JetStream: it runs
// an embedded NATS server (JetStream on, clustered through routes) or joins an existing NATS
// cluster, and hands the connection to what shares state across nodes: KV namespaces
// (kv.JetStreamStore), worker deployments and cache purges. It invents no protocol of its
// own: replication, leader election and membership are JetStream's.
//
// A Node keeps reconnecting for as long as it lives. A node that cannot reach the cluster at
// start still starts: what does not need the cluster keeps serving, and what does fails with
// ErrUnavailable until the connection is back.
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable is wrapped by errors of operations that need the cluster while it cannot
// be reached.
var ErrUnavailable = errors.New("cluster unavailable")

// SubjectPrefix starts every core NATS subject Verge uses.
const SubjectPrefix = "verge."

// Options configure a node.
type Options struct {
	// Node is this node's name, unique in the cluster.
	Node string
	// Embedded, when set, runs a NATS server in this process and connects to it.
	Embedded *Embedded
	// URLs are the servers of an existing NATS cluster (when Embedded is nil).
	URLs []string
	// Token, User/Password and Credentials (a credentials file) authenticate with an
	// existing cluster; at most one.
	Token, User, Password, Credentials string
	// TLS, when set, is used towards an existing cluster.
	TLS *tls.Config
	// Replicas is the replica count of the buckets and streams Verge creates; zero means
	// 3 when the cluster has at least 3 servers, else the number of servers.
	Replicas int
	// Logger receives connection changes and the embedded server's warnings.
	Logger *slog.Logger
	// Version is reported to the other nodes (GET /cluster).
	Version string
	// Admin is this node's admin API address, reported to the other nodes.
	Admin func() string
}

// Embedded configures the NATS server run inside the process.
type Embedded struct {
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen string
	// ClusterListen is the route address, host:port; empty means no routes (a cluster of one).
	ClusterListen string
	// Routes are the other servers' route URLs (nats-route://host:port). This server's own
	// may be among them.
	Routes []*url.URL
	// StoreDir is JetStream's data directory.
	StoreDir string
	// Name is the NATS cluster name, the same on every node.
	Name string
	// Token is required from clients and from the other servers' routes.
	Token string
	// ReadyTimeout bounds waiting for the server to accept connections; zero means 10s.
	ReadyTimeout time.Duration
	// RetryStart keeps trying to start the server in the background when it cannot start
	// now (the process was started by an upgrade and its parent still holds the ports).
	RetryStart bool
	// SyncAlways syncs every stored message to disk before it is acknowledged (NATS's
	// sync_interval: always); false syncs every 2 minutes.
	SyncAlways bool
}

// Node is this process's membership in a cluster.
type Node struct {
	name     string
	srv      *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int
	log      *slog.Logger
	started  time.Time
	version  string
	admin    func() string
	external []string
	embedded bool

	pingSub *nats.Subscription

	mu         sync.Mutex
	serverDone chan struct{} // closed when retryServer ends; nil when it never ran
	onConnect  []func()
	closed     atomic.Bool
}

// Start starts the embedded server (if configured) and connects. It fails only for errors
// that waiting would not mend (a port in use, a bad store directory, bad credentials files);
// an unreachable cluster is logged and retried in the background.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.Node == "" {
		return nil, errors.New("cluster: node name is required")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{name: o.Node, log: log, started: time.Now(), version: o.Version, admin: o.Admin}
	servers := len(o.URLs)
	copts := []nats.Option{
		nats.Name("verge " + o.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(2 * time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !n.closed.Load() {
				n.log.Warn("cluster: disconnected from NATS; retrying", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.log.Info("cluster: reconnected to NATS", "server", c.ConnectedServerName())
			n.connected()
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			n.log.Info("cluster: connected to NATS", "server", c.ConnectedServerName())
			n.connected()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			n.log.Warn("cluster: NATS error", "subject", subj, "err", err)
		}),
	}
	url := strings.Join(o.URLs, ",")
	if e := o.Embedded; e != nil {
		n.embedded = true
		// The node's own client reaches its server over loopback TCP, not in-process: while
		// the server restarts (an upgrade hands the ports from the old process to the new
		// one) the client keeps working through the other servers it learned of.
		var srv *server.Server
		var err error
		if e.RetryStart && !portsFree(e) {
			// The parent process still runs its server on these ports and store: starting
			// one here would open the same store (JetStream opens it before it binds).
			err = fmt.Errorf("ports %s and %s are still held by the old process", e.Listen, e.ClusterListen)
		} else {
			srv, err = startEmbedded(o.Node, e, log)
		}
		switch {
		case err == nil:
			n.srv = srv
			url = srv.ClientURL()
		case e.RetryStart:
			// Started by an upgrade: the old process holds the ports and the store until it
			// hands over; meanwhile its server answers on the same address.
			log.Warn("cluster: embedded NATS server not started yet; retrying until the ports are free", "err", err)
			n.serverDone = make(chan struct{})
			go n.retryServer(o.Node, e)
			url = "nats://" + e.Listen
		default:
			return nil, err
		}
		// The servers are this one and the distinct routes (which may list this one).
		seen := map[string]bool{e.ClusterListen: true}
		for _, r := range e.Routes {
			seen[r.Host] = true
		}
		servers = len(seen)
		if e.Token != "" {
			copts = append(copts, nats.Token(e.Token))
		}
	} else {
		n.external = o.URLs
		copts = append(copts, o.authOptions()...)
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		n.shutdownServer()
		return nil, fmt.Errorf("cluster: connect to %s: %w", url, err)
	}
	n.nc = nc
	if !nc.IsConnected() {
		log.Warn("cluster: cannot reach NATS yet; KV, deployments and purges that need the cluster fail until it is reachable", "urls", url)
	}
	if o.Embedded == nil {
		if d := len(nc.Servers()); d > servers {
			servers = d
		}
	}
	n.replicas = o.Replicas
	if n.replicas == 0 {
		n.replicas = min(3, max(1, servers))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		n.shutdownServer()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.js = js
	n.pingSub, err = nc.Subscribe(SubjectPrefix+"cluster.ping", n.answerPing)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return n, nil
}

func startEmbedded(node string, e *Embedded, log *slog.Logger) (*server.Server, error) {
	host, port, err := splitHostPort(e.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded listen: %w", err)
	}
	so := &server.Options{
		ServerName:            node,
		Host:                  host,
		Port:                  port,
		JetStream:             true,
		StoreDir:              e.StoreDir,
		NoSigs:                true,
		NoLog:                 false,
		MaxPayload:            32 << 20, // a KV value is up to 25 MiB
		DisableShortFirstPing: true,
		SyncAlways:            e.SyncAlways,
	}
	if e.Token != "" {
		so.Authorization = e.Token
	}
	if e.ClusterListen != "" {
		ch, cp, err := splitHostPort(e.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("cluster: embedded cluster_listen: %w", err)
		}
		so.Cluster = server.ClusterOpts{Name: e.Name, Host: ch, Port: cp}
		if e.Token != "" {
			so.Cluster.Username = "verge"
			so.Cluster.Password = e.Token
		}
		// The configs list every node, this one too; nats-server counts each route as one
		// more peer to expect before the first meta leader, so a route to itself made two
		// fresh nodes of three wait for a third vote forever. Routes naming only this
		// server are kept (config validation refuses them; JetStream refuses none at all).
		routes := make([]*url.URL, 0, len(e.Routes))
		for _, r := range e.Routes {
			if !routeToSelf(r.Host, e.ClusterListen) {
				routes = append(routes, r)
			}
		}
		if len(routes) == 0 {
			routes = e.Routes
		}
		for _, r := range routes {
			u := *r
			u.Scheme = "nats-route"
			if e.Token != "" {
				u.User = url.UserPassword("verge", e.Token)
			}
			so.Routes = append(so.Routes, &u)
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	var lastErr atomic.Pointer[string]
	srv.SetLoggerV2(natsLogger{l: log.With("component", "nats"), lastErr: &lastErr}, false, false, false)
	srv.Start()
	wait := e.ReadyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		if m := lastErr.Load(); m != nil {
			return nil, fmt.Errorf("cluster: embedded NATS server on %s did not start: %s", e.Listen, *m)
		}
		return nil, fmt.Errorf("cluster: embedded NATS server on %s did not start within %v (port in use, or store_dir %s unusable? see the log)", e.Listen, wait, e.StoreDir)
	}
	return srv, nil
}

// routeToSelf reports whether route (host:port) names this server's cluster_listen: the
// same address, or, when cluster_listen is a wildcard, its port on an address of this host.
func routeToSelf(route, clusterListen string) bool {
	if route == clusterListen {
		return true
	}
	rh, rp, err := net.SplitHostPort(route)
	if err != nil {
		return false
	}
	lh, lp, err := net.SplitHostPort(clusterListen)
	if err != nil || rp != lp {
		return false
	}
	ra, err := netip.ParseAddr(rh)
	if err != nil {
		return false
	}
	if la, err := netip.ParseAddr(lh); err == nil && !la.IsUnspecified() {
		return ra.Unmap() == la.Unmap()
	}
	if lh != "" && lh != "0.0.0.0" && lh != "::" {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if ia, ok := netip.AddrFromSlice(p.IP); ok && ia.Unmap() == ra.Unmap() {
				return true
			}
		}
	}
	return false
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", s)
	}
	if port == 0 {
		port = -1 // the server's "random port"
	}
	return h, port, nil
}

// natsLogger sends the embedded server's log to slog: notices at debug level (they are
// many and routine), warnings and errors as such.
type natsLogger struct {
	l       *slog.Logger
	lastErr *atomic.Pointer[string] // the last error logged, for start failures; may be nil
}

func (g natsLogger) Noticef(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g natsLogger) Warnf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.HasPrefix(msg, "Maximum payloads over") {
		// Verge raises the payload limit for 25 MiB KV values on purpose.
		g.l.Debug(msg)
		return
	}
	g.l.Warn(msg)
}
func (g natsLogger) Fatalf(f string, v ...any) { g.Errorf(f, v...) }
func (g natsLogger) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "trying to connect to route") {
		// Routine while the other nodes start, or while one is down: the server retries.
		g.l.Warn(msg)
		return
	}
	if g.lastErr != nil {
		g.lastErr.Store(&msg)
	}
	g.l.Error(msg)
}
func (g natsLogger) Debugf(f string, v ...any) {}
func (g natsLogger) Tracef(f string, v ...any) {}

// Name returns this node's name.
func (n *Node) Name() string { return n.name }

// Conn returns the NATS connection.
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream returns the JetStream context.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Replicas returns the replica count for new buckets and streams.
func (n *Node) Replicas() int { return n.replicas }

// Server returns the embedded NATS server, or nil when joined to an external cluster (or
// while an upgraded process waits for its parent to free the ports).
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

func (n *Node) retryServer(node string, e *Embedded) {
	defer close(n.serverDone)
	for !n.closed.Load() {
		t := time.NewTimer(250 * time.Millisecond)
		<-t.C
		if !portsFree(e) {
			continue
		}
		r := *e
		r.ReadyTimeout = 2 * time.Second
		srv, err := startEmbedded(node, &r, slog.New(slog.DiscardHandler))
		if err != nil {
			continue
		}
		srv.SetLoggerV2(natsLogger{l: n.log.With("component", "nats")}, false, false, false)
		n.mu.Lock()
		if n.closed.Load() {
			n.mu.Unlock()
			srv.Shutdown()
			return
		}
		n.srv = srv
		n.mu.Unlock()
		n.log.Info("cluster: embedded NATS server started", "listen", e.Listen)
		return
	}
}

// portsFree reports whether the embedded server's addresses can be bound now.
func portsFree(e *Embedded) bool {
	for _, a := range []string{e.Listen, e.ClusterListen} {
		if a == "" {
			continue
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// StopServer stops the embedded server but keeps the client connection, which moves to the
// other servers of the cluster (and back to this address once a new server answers on it).
// An upgrade calls it in the old process as soon as the new one is ready.
func (n *Node) StopServer() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// ClientURL returns the embedded server's client URL ("" when external).
func (n *Node) ClientURL() string {
	if srv := n.Server(); srv != nil {
		return srv.ClientURL()
	}
	return ""
}

// Connected reports whether the NATS connection is up.
func (n *Node) Connected() bool { return n.nc.IsConnected() }

// OnConnect registers f to run (on its own goroutine) whenever the connection comes up or
// back; when it is up already, f also runs now. Watches and subscriptions that must be
// re-established after an outage use it.
func (n *Node) OnConnect(f func()) {
	n.mu.Lock()
	n.onConnect = append(n.onConnect, f)
	n.mu.Unlock()
	if n.nc != nil && n.nc.IsConnected() {
		go f()
	}
}

func (n *Node) connected() {
	n.mu.Lock()
	fs := append([]func(){}, n.onConnect...)
	n.mu.Unlock()
	for _, f := range fs {
		go f()
	}
}

// WaitJetStream waits until JetStream answers (an embedded cluster has elected its meta
// leader), or ctx ends.
func (n *Node) WaitJetStream(ctx context.Context) error {
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.js.AccountInfo(c)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cluster: JetStream not ready: %w (%w)", ErrUnavailable, err)
		case <-t.C:
		}
	}
}

// Member is one Verge node as it answers a ping.
type Member struct {
	Node       string    `json:"node"`
	NATSServer string    `json:"nats_server,omitempty"`
	Admin      string    `json:"admin,omitempty"`
	Version    string    `json:"version,omitempty"`
	Started    time.Time `json:"started"`
}

func (n *Node) self() Member {
	m := Member{Node: n.name, Version: n.version, Started: n.started}
	if n.nc != nil {
		m.NATSServer = n.nc.ConnectedServerName()
	}
	if n.admin != nil {
		m.Admin = n.admin()
	}
	return m
}

func (n *Node) answerPing(msg *nats.Msg) {
	b, _ := json.Marshal(n.self())
	_ = msg.Respond(b)
}

// Members asks every node to answer and returns those that did within wait (sorted by
// name). This node is always among them.
func (n *Node) Members(ctx context.Context, wait time.Duration) []Member {
	replies := n.Gather(ctx, SubjectPrefix+"cluster.ping", nil, 0, wait)
	out := make([]Member, 0, len(replies))
	seen := map[string]bool{}
	for _, r := range replies {
		var m Member
		if json.Unmarshal(r, &m) == nil && m.Node != "" && !seen[m.Node] {
			seen[m.Node] = true
			out = append(out, m)
		}
	}
	if !seen[n.name] {
		out = append(out, n.self())
	}
	sortMembers(out)
	return out
}

// Gather publishes data on subject with a reply inbox and collects the replies until want
// of them arrived (0: no count), wait has passed, or ctx ends.
func (n *Node) Gather(ctx context.Context, subject string, data []byte, want int, wait time.Duration) [][]byte {
	inbox := n.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := n.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := n.nc.PublishRequest(subject, inbox, data); err != nil {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var out [][]byte
	for {
		select {
		case m := <-ch:
			out = append(out, m.Data)
			if want > 0 && len(out) >= want {
				return out
			}
		case <-t.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
}

// Close leaves the cluster: the connection is drained and the embedded server stopped.
func (n *Node) Close() {
	if n.closed.Swap(true) {
		return
	}
	if n.pingSub != nil {
		_ = n.pingSub.Unsubscribe()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	n.shutdownServer()
}

func (n *Node) shutdownServer() {
	n.mu.Lock()
	done := n.serverDone
	n.mu.Unlock()
	if done != nil {
		<-done
	}
	n.StopServer()
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
}

// authOptions are the client options that authenticate with an external cluster: one of
// Token, User/Password and Credentials, and TLS.
func (o *Options) authOptions() []nats.Option {
	var opts []nats.Option
	switch {
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Credentials != "":
		opts = append(opts, nats.UserCredentials(o.Credentials))
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	return opts
}
