package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const clusterBase = `
listeners: [{address: "127.0.0.1:8080"}]
routes: [{match: {path: /}, respond: {status: 200}}]
`

func TestClusterDefaults(t *testing.T) {
	c, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+`
cluster:
  node: a
  embedded:
    cluster_listen: 127.0.0.1:6222
    routes: [127.0.0.1:6222, 127.0.0.1:6223, "nats-route://127.0.0.1:6224"]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Cluster.Embedded
	if e.Listen != DefaultClusterClientListen || e.Name != "verge" || e.StoreDir != "/etc/verge/.verge/jetstream" || e.SyncAlways {
		t.Fatalf("defaults: %+v", e)
	}
	c2, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+`
cluster:
  node: a
  embedded: {sync_always: true}
`))
	if err != nil || !c2.Cluster.Embedded.SyncAlways {
		t.Fatalf("sync_always: %v %+v", err, c2.Cluster.Embedded)
	}
	if !c.Cluster.Enabled() {
		t.Fatal("not enabled")
	}
	if c.Cluster.KVCacheTTL != DefaultKVCacheTTL || c.Cluster.KVCacheSize != DefaultKVCacheSize {
		t.Fatalf("kv cache defaults: ttl %v size %d", c.Cluster.KVCacheTTL, c.Cluster.KVCacheSize)
	}
	c, err = Parse("/etc/verge/verge.yaml", []byte(clusterBase))
	if err != nil || c.Cluster.Enabled() || c.Cluster.Node != "" {
		t.Fatalf("no cluster: %v %+v", err, c.Cluster)
	}
}

func TestClusterErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"cluster: {node: a}", "verge.yaml:5:10: cluster: cluster needs nats"},
		{"cluster: {node: a, nats: {urls: []}, embedded: {}}", "give nats or embedded, not both"},
		{"cluster:\n  nats: {urls: [\"http://x:1\"]}", "verge.yaml:6:17: cluster.nats.urls[0]: NATS URL \"http://x:1\": scheme must be"},
		{"cluster: {node: \"a.b\", embedded: {}}", "cluster.node: node name \"a.b\""},
		{"cluster: {node: a, replicas: 7, embedded: {}}", "cluster.replicas: replicas 7 is out of range"},
		{"cluster: {node: a, embedded: {listen: \"0.0.0.0:4222\"}}", "cluster.embedded: listen or cluster_listen is not a loopback address: set token"},
		{"cluster: {node: a, embedded: {listen: \"0.0.0.0:4222\", token: short}}", "cluster.embedded.token: token is 5 bytes; at least 16 are required"},
		{"cluster: {node: a, embedded: {routes: [\"127.0.0.1:6222\"]}}", "routes need cluster_listen"},
		{"cluster: {node: a, embedded: {cluster_listen: \"127.0.0.1:6222\"}}", "cluster.embedded.routes: cluster_listen needs routes"},
		{"cluster: {node: a, embedded: {cluster_listen: \"127.0.0.1:6222\", routes: [\"http://h:1\"]}}", "cluster.embedded.routes[0]: route"},
		{"cluster: {node: a, embedded: {cluster_listen: \"127.0.0.1:6222\", routes: [\"127.0.0.1:6222\"]}}", "verge.yaml:5:73: cluster.embedded.routes: routes name only this node's cluster_listen 127.0.0.1:6222"},
		{"cluster: {node: a, nats: {urls: [\"nats://h:4222\"], token: t, user: u, password: p}}", "give one of token, user/password and credentials"},
		{"cluster: {node: a, nats: {urls: [\"nats://h:4222\"], user: u}}", "user and password go together"},
		{"cluster: {node: a, kv_cache_ttl: 500ms, embedded: {}}", "verge.yaml:5:34: cluster.kv_cache_ttl: kv_cache_ttl 500ms is out of range 1s..24h"},
		{"cluster: {node: a, kv_cache_size: 1KiB, embedded: {}}", "cluster.kv_cache_size: kv_cache_size 1024 is below 1MiB"},
		{"cluster: {kv_cache_ttl: 5s}", "cluster needs nats"},
	} {
		_, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+"\n"+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
	// Token files are read at validation, as the admin's is: verge validate refuses what a
	// start would, with the field's position (validate once said ok to a missing file).
	dir := t.TempDir()
	short, long := filepath.Join(dir, "short.token"), filepath.Join(dir, "long.token")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, []byte("s3cret-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"cluster:\n  embedded:\n    token_file: " + filepath.Join(dir, "missing") + "\n", "verge.yaml:7:17: cluster.embedded.token_file: "},
		{"cluster:\n  embedded:\n    token_file: " + short + "\n", "verge.yaml:7:17: cluster.embedded.token_file: the token in " + short + " is 5 bytes; at least 16 are required"},
		{"cluster:\n  nats:\n    urls: [nats://h:4222]\n    token_file: " + filepath.Join(dir, "missing") + "\n", "verge.yaml:8:17: cluster.nats.token_file: "},
	} {
		_, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+"\n"+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
	if c, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+"cluster: {embedded: {listen: \"0.0.0.0:4222\", token_file: "+long+"}}\n")); err != nil {
		t.Fatal(err)
	} else if tok, err := c.Cluster.Embedded.EmbeddedToken(); err != nil || tok != "s3cret-token-0123456789" {
		t.Fatalf("token from file: %q, %v", tok, err)
	}
	c, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+"cluster: {node: a, kv_cache_ttl: 5s, kv_cache_size: 8MiB, embedded: {}}\n"))
	if err != nil || c.Cluster.KVCacheTTL != Duration(5*time.Second) || c.Cluster.KVCacheSize != 8<<20 {
		t.Fatalf("kv cache fields: %v %+v", err, c.Cluster)
	}
	// A public embedded listener with a token is accepted.
	if _, err := Parse("/etc/verge/verge.yaml", []byte(clusterBase+"cluster: {node: a, embedded: {listen: \"0.0.0.0:4222\", token: s3cret-token-0123456789}}\n")); err != nil {
		t.Fatal(err)
	}
}
