package config

import (
	"strings"
	"testing"
	"time"
)

func TestCacheConfig(t *testing.T) {
	c, err := Parse("/etc/verge/v.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
upstreams: [{name: app, servers: [{address: "127.0.0.1:9000"}]}]
cache:
  memory_size: 64MiB
  disk: {path: cache, size: 2GiB}
routes:
  - upstream: app
    cache:
      ttl: {"200": 10m, any: 30s}
      statuses: [200, 404]
      key: {exclude_query: [utm_source], headers: [Accept-Language]}
      bypass: {cookies: [session], headers: [Authorization]}
      use_stale: [error, timeout, http_503]
      targeted_field: Acme-Cache-Control
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.MemorySize != 64<<20 || c.Cache.MemoryMaxObject != 8<<20 || c.Cache.Disk.Path != "/etc/verge/cache" || c.Cache.Disk.Size != 2<<30 {
		t.Fatalf("storage %+v %+v", c.Cache, c.Cache.Disk)
	}
	rc := c.Routes[0].Cache
	if !rc.On() || rc.MaxObjectSize != DefaultCacheMaxObjectSize || rc.LockTimeout.Std() != DefaultCacheLockTimeout {
		t.Fatalf("route cache defaults %+v", rc)
	}
	if strings.Join(rc.UseStale, ",") != "error,timeout,http_503" || rc.TargetedField != "Acme-Cache-Control" {
		t.Fatalf("use_stale %q, targeted_field %q", rc.UseStale, rc.TargetedField)
	}
	ttl := rc.StatusTTLs()
	if ttl[200] != 10*time.Minute || ttl[0] != 30*time.Second {
		t.Fatalf("ttl %v", ttl)
	}
}

func TestCacheConfigErrors(t *testing.T) {
	_, err := Parse("v.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
cache: {disk: {size: 1GiB}}
routes:
  - respond: {status: 200}
    cache:
      ttl: {abc: 1s}
      statuses: [99]
      key: {include_query: [a], exclude_query: [b]}
      use_stale: [error, http_418]
      targeted_field: "Bad Field"
  - respond: {status: 200}
    cache: {targeted_field: cache-control}
`))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"cache.disk.path: path is required", "routes[0].cache: caching needs an upstream or worker route",
		`routes[0].cache.ttl.abc: want a status code`, "routes[0].cache.statuses[0]: invalid status 99", "include_query and exclude_query are exclusive",
		`routes[0].cache.use_stale[1]: unknown condition "http_418"`, `routes[0].cache.targeted_field: invalid header name "Bad Field"`,
		"routes[1].cache.targeted_field: cache-control is not a targeted field"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
