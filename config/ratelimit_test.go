package config

import (
	"strings"
	"testing"
	"time"
)

func TestRateLimitDefaults(t *testing.T) {
	c, err := Parse("r.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080", rate_limits: [api]}]
rate_limits: [{name: api, limit: 100}]
routes: [{respond: {status: 200}, rate_limits: [api]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.RateLimits[0]
	if r.Algorithm != "sliding_window" || r.Period.Std() != time.Second || r.Mode != "enforce" || r.Keys != 16384 ||
		r.IPv4Prefix != 32 || r.IPv6Prefix != 64 || r.Status != 429 || len(r.Key) != 1 || r.Key[0] != "client_ip" {
		t.Fatalf("defaults: %+v", r)
	}
}

func TestRateLimitErrors(t *testing.T) {
	_, err := Parse("r.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080", rate_limits: [nope]}]
rate_limits:
  - {name: a, limit: 0, period: 500ms, key: [client_ip, header, "header:Bad Name", bogus], algorithm: leaky, mode: shout}
  - {name: a, limit: 5, period: 48h, burst: 3, ipv4_prefix: 33, ipv6_prefix: 129, keys: 99999999, status: 418, tarpit: 11s}
  - {name: "q\"x", limit: 5}
routes: [{respond: {status: 200}, rate_limits: [a, a, missing]}]
`))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		`listeners[0].rate_limits[0]: unknown rate limit "nope"`,
		"rate_limits[0].limit: limit is required",
		"rate_limits[0].period: period 500ms out of range 1s..24h",
		`rate_limits[0].key[1]: key part "header" needs a name`,
		`rate_limits[0].key[2]: key part "header:Bad Name"`,
		`rate_limits[0].key[3]: unknown key part "bogus"`,
		`rate_limits[0].algorithm: unknown algorithm "leaky"`,
		`rate_limits[0].mode: unknown mode "shout"`,
		`rate_limits[1].name: duplicate rate limit name "a"`,
		"rate_limits[1].period: period 48h0m0s out of range",
		"rate_limits[1].burst: burst is for algorithm token_bucket only",
		"rate_limits[1].ipv4_prefix: ipv4_prefix 33 out of range",
		"rate_limits[1].ipv6_prefix: ipv6_prefix 129 out of range",
		"rate_limits[1].keys: keys 99999999 out of range",
		"rate_limits[1].status: status 418",
		"rate_limits[1].tarpit: tarpit 11s out of range",
		"rate_limits[2].name: name",
		`routes[0].rate_limits[1]: rate limit "a" listed twice`,
		`routes[0].rate_limits[2]: unknown rate limit "missing"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if !strings.Contains(err.Error(), "r.yaml:") {
		t.Errorf("errors do not name the file and line:\n%v", err)
	}
}

func TestOverloadConfig(t *testing.T) {
	c, err := Parse("o.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
overload: {cpu: 0.9, memory: 2GiB, queue_delay: 20ms}
routes: [{respond: {status: 200}, priority: low}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Overload; o.CPU != 0.9 || o.Memory != 2<<30 || o.QueueDelay.Std() != 20*time.Millisecond || o.ConnsPerClient != 4 || !o.Enabled() {
		t.Fatalf("overload: %+v", o)
	}
	_, err = Parse("o.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
overload: {cpu: 1.5, conns_per_client: -1}
routes: [{respond: {status: 200}, priority: urgent}]
`))
	for _, want := range []string{"overload.cpu: cpu 1.5 out of range", "overload.conns_per_client: must not be negative", `routes[0].priority: unknown priority "urgent"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q: %v", want, err)
		}
	}
}
