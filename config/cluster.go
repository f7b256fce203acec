package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cluster makes this Verge one node of many that share KV namespaces, worker deployments and
// cache purges through NATS JetStream (docs/cluster.md). Exactly one of NATS (join an
// existing NATS cluster) and Embedded (run a JetStream server inside this process) is set.
// It is fixed at start: a reload does not change it.
type Cluster struct {
	// Node is this node's name, unique in the cluster. Empty means the host name.
	Node string `yaml:"node"`
	// NATS joins an existing NATS cluster with JetStream enabled.
	NATS *ClusterNATS `yaml:"nats"`
	// Embedded runs a NATS server with JetStream inside this process.
	Embedded *ClusterEmbedded `yaml:"embedded"`
	// Replicas is how many copies JetStream keeps of every bucket and stream Verge creates,
	// 1 to 5. Zero means 3 when the cluster has at least 3 servers, else 1.
	Replicas int `yaml:"replicas"`
	// KVCacheTTL bounds how stale a KV entry this node caches may be served while the watch
	// that keeps the cache current is down (docs/cluster.md). Zero means DefaultKVCacheTTL.
	KVCacheTTL Duration `yaml:"kv_cache_ttl"`
	// KVCacheSize bounds the bytes of KV values this node caches. Zero means
	// DefaultKVCacheSize.
	KVCacheSize Size `yaml:"kv_cache_size"`
}

// ClusterNATS is how to reach an existing NATS cluster.
type ClusterNATS struct {
	// URLs are the servers to connect to, e.g. "nats://10.0.0.1:4222"; more are learned from
	// the cluster. At least one.
	URLs []string `yaml:"urls"`
	// Token authenticates with a token. TokenFile reads it from a file instead.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// User and Password authenticate with a user name and password.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Credentials is a NATS credentials file (JWT and NKey seed).
	Credentials string `yaml:"credentials"`
	// TLS, when set, makes the connection use TLS.
	TLS *ClusterTLS `yaml:"tls"`
}

// ClusterTLS configures TLS towards NATS servers.
type ClusterTLS struct {
	// CA is a PEM file of the authorities that sign the servers' certificates. Empty means
	// the system's.
	CA string `yaml:"ca"`
	// Cert and Key are a client certificate and its key, both or neither.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is the name checked in the servers' certificates. Empty means the host of
	// the URL.
	ServerName string `yaml:"server_name"`
}

// ClusterEmbedded configures the NATS server run inside this process.
type ClusterEmbedded struct {
	// Listen is the client address of the embedded server (host:port), used by `verge kv` and
	// by NATS tools. Empty means DefaultClusterClientListen.
	Listen string `yaml:"listen"`
	// ClusterListen is the address other nodes' embedded servers connect to (host:port).
	// Empty means a cluster of this node alone.
	ClusterListen string `yaml:"cluster_listen"`
	// Routes are the other nodes' cluster_listen addresses (host:port or nats-route://
	// host:port). This node's own address may be listed too, so every node can share one list.
	Routes []string `yaml:"routes"`
	// StoreDir is where JetStream keeps its data. Empty means "jetstream" under worker_data.
	StoreDir string `yaml:"store_dir"`
	// Name is the NATS cluster's name, the same on every node. Empty means "verge".
	Name string `yaml:"name"`
	// Token is required from clients and from the other nodes' servers. It is required when
	// listen or cluster_listen is not a loopback address: whoever reaches the embedded server
	// can read every KV value and deploy workers. TokenFile reads it from a file instead.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// SyncAlways makes JetStream sync every stored message to disk before acknowledging
	// it. False (NATS's default) syncs every 2 minutes: an acknowledged write is on a
	// majority of nodes (and survives a kill -9 of any of them) but a power loss that hits
	// a majority at once may lose the last writes.
	SyncAlways bool `yaml:"sync_always"`
}

// Cluster defaults.
const (
	// DefaultClusterClientListen is the embedded server's client address.
	DefaultClusterClientListen = "127.0.0.1:4222"
	// DefaultClusterName is the embedded NATS cluster's name.
	DefaultClusterName = "verge"
	// MaxClusterReplicas is JetStream's limit on replicas.
	MaxClusterReplicas = 5
	// MinClusterTokenBytes is the shortest embedded server token accepted.
	MinClusterTokenBytes = 16
	// DefaultKVCacheTTL is kv_cache_ttl's default.
	DefaultKVCacheTTL = Duration(60 * time.Second)
	// DefaultKVCacheSize is kv_cache_size's default.
	DefaultKVCacheSize = Size(64 << 20)
	// MinKVCacheSize is the least kv_cache_size accepted.
	MinKVCacheSize = Size(1 << 20)
)

func (c *Cluster) setDefaults(workerData string) {
	if c.Node == "" && c.Enabled() {
		c.Node, _ = os.Hostname()
		// A host name may hold dots; NATS server names and subjects do not want them.
		c.Node, _, _ = strings.Cut(c.Node, ".")
	}
	if c.Enabled() {
		if c.KVCacheTTL == 0 {
			c.KVCacheTTL = DefaultKVCacheTTL
		}
		if c.KVCacheSize == 0 {
			c.KVCacheSize = DefaultKVCacheSize
		}
	}
	if e := c.Embedded; e != nil {
		if e.Listen == "" {
			e.Listen = DefaultClusterClientListen
		}
		if e.Name == "" {
			e.Name = DefaultClusterName
		}
		if e.StoreDir == "" && workerData != "" {
			e.StoreDir = filepath.Join(workerData, "jetstream")
		}
	}
}

func (c *Cluster) resolvePaths(abs func(*string)) {
	if n := c.NATS; n != nil {
		abs(&n.TokenFile)
		abs(&n.Credentials)
		if t := n.TLS; t != nil {
			abs(&t.CA)
			abs(&t.Cert)
			abs(&t.Key)
		}
	}
	if e := c.Embedded; e != nil {
		abs(&e.StoreDir)
		abs(&e.TokenFile)
	}
}

// Enabled reports whether a cluster is configured.
func (c *Cluster) Enabled() bool { return c.NATS != nil || c.Embedded != nil }

// EmbeddedToken returns the embedded server's token, read from TokenFile when set.
func (e *ClusterEmbedded) EmbeddedToken() (string, error) {
	if e.TokenFile != "" {
		return ReadToken(e.TokenFile)
	}
	return e.Token, nil
}

// NATSToken returns the token for an external cluster, read from TokenFile when set.
func (n *ClusterNATS) NATSToken() (string, error) {
	if n.TokenFile != "" {
		return ReadToken(n.TokenFile)
	}
	return n.Token, nil
}

func clusterNodeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// cluster validates the cluster section.
func (v *validator) cluster() {
	c := &v.c.Cluster
	if !c.Enabled() {
		if c.Node != "" || c.Replicas != 0 || c.KVCacheTTL != 0 || c.KVCacheSize != 0 {
			v.errf("cluster", "cluster needs nats (an existing NATS cluster) or embedded (a JetStream server in this process)")
		}
		return
	}
	if c.NATS != nil && c.Embedded != nil {
		v.errf("cluster.embedded", "give nats or embedded, not both")
	}
	if !clusterNodeName(c.Node) {
		v.errf("cluster.node", "node name %q must be 1 to 64 letters, digits, '-' or '_'", c.Node)
	}
	if c.Replicas < 0 || c.Replicas > MaxClusterReplicas {
		v.errf("cluster.replicas", "replicas %d is out of range 1..%d", c.Replicas, MaxClusterReplicas)
	}
	if c.KVCacheTTL < Duration(time.Second) || c.KVCacheTTL > Duration(24*time.Hour) {
		v.errf("cluster.kv_cache_ttl", "kv_cache_ttl %v is out of range 1s..24h", c.KVCacheTTL)
	}
	if c.KVCacheSize < MinKVCacheSize {
		v.errf("cluster.kv_cache_size", "kv_cache_size %d is below 1MiB", c.KVCacheSize)
	}
	if n := c.NATS; n != nil {
		if len(n.URLs) == 0 {
			v.errf("cluster.nats.urls", "at least one NATS URL is required, e.g. nats://10.0.0.1:4222")
		}
		for i, u := range n.URLs {
			if err := checkNATSURL(u); err != nil {
				v.errf(fmt.Sprintf("cluster.nats.urls[%d]", i), "%v", err)
			}
		}
		auth := 0
		if n.Token != "" || n.TokenFile != "" {
			auth++
		}
		if n.Token != "" && n.TokenFile != "" {
			v.errf("cluster.nats.token_file", "give token or token_file, not both")
		} else if n.TokenFile != "" {
			if tok, err := ReadToken(n.TokenFile); err != nil {
				v.errf("cluster.nats.token_file", "%v", err)
			} else if tok == "" {
				v.errf("cluster.nats.token_file", "%s holds no token", n.TokenFile)
			}
		}
		if n.User != "" || n.Password != "" {
			auth++
			if n.User == "" || n.Password == "" {
				v.errf("cluster.nats.user", "user and password go together")
			}
		}
		if n.Credentials != "" {
			auth++
		}
		if auth > 1 {
			v.errf("cluster.nats", "give one of token, user/password and credentials")
		}
		if t := n.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
			v.errf("cluster.nats.tls.cert", "cert and key go together")
		}
	}
	if e := c.Embedded; e != nil {
		hostOf := func(path, addr string) (string, bool) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				v.errf(path, "address %q is not host:port: %v", addr, err)
				return "", false
			}
			if p, err := parsePort(port); err != nil || p == 0 {
				v.errf(path, "address %q has an invalid port", addr)
				return "", false
			}
			return host, true
		}
		public := false
		if h, ok := hostOf("cluster.embedded.listen", e.Listen); ok && !loopbackHost(h) {
			public = true
		}
		if e.ClusterListen != "" {
			if h, ok := hostOf("cluster.embedded.cluster_listen", e.ClusterListen); ok && !loopbackHost(h) {
				public = true
			}
			if e.ClusterListen == e.Listen {
				v.errf("cluster.embedded.cluster_listen", "cluster_listen %s is the same as listen", e.ClusterListen)
			}
			if len(e.Routes) == 0 {
				v.errf("cluster.embedded.routes", "cluster_listen needs routes: list every node's cluster_listen (this one's may be included); JetStream refuses a cluster without routes")
			}
		} else if len(e.Routes) > 0 {
			v.errf("cluster.embedded.cluster_listen", "routes need cluster_listen: the address the other nodes connect to")
		}
		others := 0
		for i, r := range e.Routes {
			if u, err := RouteURL(r); err != nil {
				v.errf(fmt.Sprintf("cluster.embedded.routes[%d]", i), "%v", err)
				others++ // reported already
			} else if u.Host != e.ClusterListen {
				others++
			}
		}
		if len(e.Routes) > 0 && others == 0 {
			v.errf("cluster.embedded.routes", "routes name only this node's cluster_listen %s: list the other nodes' cluster_listen too (a single node needs neither cluster_listen nor routes)", e.ClusterListen)
		}
		if e.Token != "" && e.TokenFile != "" {
			v.errf("cluster.embedded.token_file", "give token or token_file, not both")
		} else if e.TokenFile != "" {
			// Read here, as the admin token file is, so that verge validate and a start
			// refuse it alike, with the field's position.
			if tok, err := ReadToken(e.TokenFile); err != nil {
				v.errf("cluster.embedded.token_file", "%v", err)
			} else if len(tok) < MinClusterTokenBytes {
				v.errf("cluster.embedded.token_file", "the token in %s is %d bytes; at least %d are required (whoever has it can purge every cache and read every KV value)", e.TokenFile, len(tok), MinClusterTokenBytes)
			}
		}
		if e.Token != "" && len(e.Token) < MinClusterTokenBytes {
			v.errf("cluster.embedded.token", "token is %d bytes; at least %d are required (whoever has it can purge every cache and read every KV value)", len(e.Token), MinClusterTokenBytes)
		}
		if public && e.Token == "" && e.TokenFile == "" {
			v.errf("cluster.embedded", "listen or cluster_listen is not a loopback address: set token (or token_file); whoever reaches the embedded server can read every KV value and deploy workers")
		}
		if e.StoreDir == "" {
			v.errf("cluster.embedded.store_dir", "store_dir is required")
		}
	}
}

func parsePort(s string) (int, error) {
	var p int
	if _, err := fmt.Sscanf(s, "%d", &p); err != nil || p < 0 || p > 65535 || fmt.Sprint(p) != s {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return p, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

func checkNATSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("NATS URL %q: %v", s, err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("NATS URL %q: scheme must be nats, tls, ws or wss", s)
	}
	if u.Host == "" {
		return fmt.Errorf("NATS URL %q has no host", s)
	}
	return nil
}

// RouteURL parses an embedded route, host:port or nats-route://host:port.
func RouteURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "nats-route://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("route %q: %v", s, err)
	}
	if u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls" {
		return nil, fmt.Errorf("route %q: scheme must be nats-route", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return nil, fmt.Errorf("route %q: want host:port", s)
	}
	return u, nil
}
