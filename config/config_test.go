package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimal = `listeners:
  - address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  - name: api
    servers:
      - address: 127.0.0.1:9000
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown top-level key", "listeners:\n  - address: :80\nroutess: []\n",
			`t.yaml:3:1: routess: unknown field "routess" (did you mean "routes"?)`},
		{"unknown nested key", "listeners:\n  - address: :80\n    timeouts:\n      idel: 5s\n",
			`t.yaml:4:7: listeners[0].timeouts.idel: unknown field "idel" (did you mean "idle"?)`},
		{"route to missing group", strings.Replace(minimal, "upstream: api", "upstream: apx", 1),
			`t.yaml:4:15: routes[0].upstream: unknown upstream group "apx"`},
		{"bad duration", strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    timeouts: {idle: 5 seconds}", 1),
			`t.yaml:3:22: listeners[0].timeouts.idle: invalid duration "5 seconds" (use e.g. 250ms, 5s, 1m)`},
		{"bad size", strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    limits:\n      max_body: 10 parsecs", 1),
			`t.yaml:4:17: listeners[0].limits.max_body: invalid size "10 parsecs" (use e.g. 512, 32KiB, 1MiB)`},
		{"bad address", strings.Replace(minimal, "127.0.0.1:8080", "localhost", 1),
			`t.yaml:2:14: listeners[0].address: invalid address "localhost": want host:port`},
		{"duplicate group", minimal + "  - name: api\n    servers: [{address: 127.0.0.1:9001}]\n",
			`t.yaml:9:11: upstreams[1].name: duplicate upstream group "api"`},
		{"conflicting listeners", strings.Replace(minimal, "  - address: 127.0.0.1:8080\n", "  - address: 127.0.0.1:8080\n  - address: 0.0.0.0:8080\n", 1),
			`t.yaml:3:14: listeners[1].address: address 0.0.0.0:8080 conflicts with listeners[0]`},
		{"two actions", strings.Replace(minimal, "  - upstream: api\n", "  - upstream: api\n    respond: {body: hi}\n", 1),
			`t.yaml:4:5: routes[0]: upstream, worker, files, ai_gateway, redirect and respond are exclusive`},
		{"no action", strings.Replace(minimal, "  - upstream: api\n", "  - match: {path: /x}\n", 1),
			`t.yaml:4:5: routes[0]: one of upstream, worker, files, ai_gateway, redirect or respond is required`},
		{"bad policy", minimal + "    policy: fastest\n",
			`t.yaml:9:13: upstreams[0].policy: unknown policy "fastest" (want one of round_robin, weighted, random, p2c, least_conn, consistent_hash)`},
		{"missing cert file", strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    tls:\n      certificates:\n        - {cert: nope.pem, key: nope.key}", 1),
			`t.yaml:5:18: listeners[0].tls.certificates[0].cert: load certificate nope.pem: open nope.pem: no such file or directory`},
		{"wrong type", "listeners: {address: x}\n",
			`t.yaml:1:12: listeners: want a list, got a mapping`},
		{"int as string", strings.Replace(minimal, "address: 127.0.0.1:9000", "address: 127.0.0.1:9000\n        weight: heavy", 1),
			`t.yaml:9:17: upstreams[0].servers[0].weight: want an integer, got "heavy"`},
		{"wildcard in the middle", strings.Replace(minimal, "  - upstream: api\n", "  - upstream: api\n    match: {host: a.*.com}\n", 1),
			`t.yaml:5:19: routes[0].match.host[0]: invalid host "a.*.com" (a wildcard is allowed only as the first label: *.example.com)`},
		{"redirect placeholder", strings.Replace(minimal, "  - upstream: api\n", "  - redirect: {to: \"https://{hots}/\"}\n", 1),
			`t.yaml:4:20: routes[0].redirect.to: unknown placeholder {hots} (want one of {scheme}, {host}, {path}, {query}, {uri})`},
		{"h2 without tls", minimal + "    protocol: h2\n",
			`t.yaml:9:15: upstreams[0].protocol: h2 needs tls; use h2c for HTTP/2 in plain text`},
		{"unknown listener in route", strings.Replace(minimal, "  - upstream: api\n", "  - upstream: api\n    listeners: [public]\n", 1),
			`t.yaml:5:17: routes[0].listeners[0]: unknown listener "public"`},
		{"syntax error", "listeners:\n  - address: [\n", `t.yaml:2: invalid YAML: did not find expected node content`},
		{"no listeners", "routes: []\n", `t.yaml:1:1: listeners: at least one listener is required`},
		{"access log field", minimal + "access_log:\n  fields: [status, colour]\n",
			`t.yaml:10:20: access_log.fields[1]: unknown field "colour" (want one of time, remote_addr, method, host, path, query, proto, status, bytes_sent, bytes_received, duration, upstream_addr, upstream_status, upstream_wait, route, attempts, error, user_agent, referer, request_id, tls_ja4, ai_key, ai_provider, ai_model, ai_cache, ai_first_byte, ai_tokens_in, ai_tokens_out, ai_cost)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got  %s\n want %s", got, tt.want)
			}
		})
	}
}

func TestErrorsAreCollected(t *testing.T) {
	y := strings.Replace(minimal, "upstream: api", "upstream: nope", 1) + "    policy: nope\n"
	_, err := Parse("t.yaml", []byte(y))
	list, ok := err.(ErrorList)
	if !ok || len(list) != 2 {
		t.Fatalf("got %v, want 2 errors", err)
	}
	if list[0].Pos.Line > list[1].Pos.Line {
		t.Errorf("errors not in file order: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if l.Name != "127.0.0.1:8080" || len(l.Protocols) != 2 || l.Timeouts.ReadHeader.Std() != 10*time.Second ||
		l.Timeouts.Idle.Std() != time.Minute || l.Limits.MaxHeaderBytes != 32<<10 || l.Limits.MaxHeaders != 100 {
		t.Errorf("listener defaults: %+v", l)
	}
	r := c.Routes[0]
	if r.Name != "route0" || *r.Retries != 2 {
		t.Errorf("route defaults: name %q retries %d", r.Name, *r.Retries)
	}
	u := c.Upstreams[0]
	if u.Policy != "round_robin" || u.Protocol != "h1" || u.Servers[0].Weight != 1 || u.Timeouts.Connect.Std() != 5*time.Second ||
		u.Passive.MaxFails != 3 || u.Pool.IdleTimeout.Std() != time.Minute {
		t.Errorf("upstream defaults: %+v", u)
	}
	if c.Admin.Address != "127.0.0.1:9901" || c.AccessLog.Output != "stdout" || c.AccessLog.Format != "json" ||
		c.Log.Level != "info" || !*c.Metrics.Enabled || c.Shutdown.GracePeriod.Std() != 30*time.Second || c.PIDFile == "" {
		t.Errorf("global defaults: admin %+v log %+v access %+v", c.Admin, c.Log, c.AccessLog)
	}
}

func TestSizesAndLists(t *testing.T) {
	y := strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    limits: {max_body: 1MiB, max_header_bytes: 64KiB, max_request_line: 4KB}", 1)
	y = strings.Replace(y, "  - upstream: api\n", "  - upstream: api\n    match: {host: Example.COM, methods: GET}\n", 1)
	c, err := Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	lim := c.Listeners[0].Limits
	if lim.MaxBody != 1<<20 || lim.MaxHeaderBytes != 64<<10 || lim.MaxRequestLine != 4000 {
		t.Errorf("sizes: %+v", lim)
	}
	m := c.Routes[0].Match
	if len(m.Host) != 1 || m.Host[0] != "example.com" || len(m.Methods) != 1 || m.Methods[0] != "GET" {
		t.Errorf("scalar lists: %+v", m)
	}
}

func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}

func TestRelativePathsFollowTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret-admin-token-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := minimal + "admin:\n  token_file: token\n"
	f := filepath.Join(dir, "v.yaml")
	os.WriteFile(f, []byte(y), 0o644)
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Admin.TokenFile; got != filepath.Join(dir, "token") {
		t.Errorf("token_file = %q, want it next to the config", got)
	}
}

// TestAdminExposureRefused: an admin API off loopback without a token, or with a token too
// short to resist guessing, is a validation error naming the file, position and field.
func TestAdminExposureRefused(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.token")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	long := filepath.Join(dir, "long.token")
	os.WriteFile(long, []byte("0123456789abcdef0123\n"), 0o600)
	for _, tc := range []struct {
		name, admin, want string
	}{
		{"wildcard without token", "admin:\n  address: 0.0.0.0:9901\n",
			`t.yaml:10:12: admin.address: admin address 0.0.0.0:9901 is not loopback and no admin.token or admin.token_file is set`},
		{"empty host without token", "admin:\n  address: \":9901\"\n",
			`t.yaml:10:12: admin.address: admin address :9901 is not loopback`},
		{"ipv6 wildcard without token", "admin:\n  address: \"[::]:9901\"\n",
			`t.yaml:10:12: admin.address: admin address [::]:9901 is not loopback`},
		{"public ip without token", "admin: {address: 192.0.2.10:9901}\n",
			`t.yaml:9:18: admin.address: admin address 192.0.2.10:9901 is not loopback`},
		{"host name without token", "admin: {address: admin.example.com:9901}\n",
			`t.yaml:9:18: admin.address: admin address admin.example.com:9901 is not loopback`},
		{"short token", "admin:\n  address: 127.0.0.1:9901\n  token: abc\n",
			`t.yaml:11:10: admin.token: token is 3 bytes; at least 16 are required`},
		{"short token off loopback", "admin:\n  address: 0.0.0.0:9901\n  token: fifteen-bytes!!\n",
			`t.yaml:11:10: admin.token: token is 15 bytes; at least 16 are required`},
		{"short token file", "admin:\n  address: 0.0.0.0:9901\n  token_file: " + short + "\n",
			`t.yaml:11:15: admin.token_file: the token in ` + short + ` is 3 bytes; at least 16 are required`},
		{"bad allowed host", "admin:\n  allowed_hosts: [\"http://x/\"]\n",
			`t.yaml:10:19: admin.allowed_hosts[0]: invalid host "http://x/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(minimal+tc.admin))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	for _, ok := range []string{
		"",
		"admin: {address: localhost:9901}\n",
		"admin: {address: \"[::1]:9901\"}\n",
		"admin: {address: 127.0.0.5:9901}\n",
		"admin: {address: 0.0.0.0:9901, token: 0123456789abcdef}\n",
		"admin: {address: 0.0.0.0:9901, token_file: " + long + "}\n",
		"admin: {address: 0.0.0.0:9901, disabled: true}\n",
		"admin: {allowed_hosts: [admin.example.com, \"ops.example:8443\", \"[::1]:9901\", 10.0.0.1]}\n",
	} {
		if _, err := Parse("t.yaml", []byte(minimal+ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestForwardingAndUpgradeFields(t *testing.T) {
	c, err := Parse("t.yaml", []byte(strings.Replace(minimal, "  - upstream: api\n",
		"  - upstream: api\n  - upstream: api\n    upgrades: []\n  - upstream: api\n    upgrades: websocket\n    allow_trace: true\n  - upstream: api\n    upgrades: [websocket, foo/2]\n", 1)+
		"trusted_proxies: [10.0.0.0/8, 192.0.2.1, \"2001:db8::/32\", \"::ffff:172.16.0.0/108\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]string{{"websocket"}, {}, {"websocket"}, {"websocket", "foo/2"}} {
		if got := []string(*c.Routes[i].Upgrades); !slices.Equal(got, want) {
			t.Errorf("routes[%d].upgrades = %q, want %q", i, got, want)
		}
	}
	if c.Routes[0].AllowTrace || !c.Routes[2].AllowTrace {
		t.Errorf("allow_trace = %v %v, want false true", c.Routes[0].AllowTrace, c.Routes[2].AllowTrace)
	}
	got := fmt.Sprint(c.TrustedProxiesFor(&c.Listeners[0]))
	if want := "[10.0.0.0/8 192.0.2.1/32 2001:db8::/32 172.16.0.0/12]"; got != want {
		t.Errorf("inherited trusted proxies = %s, want %s", got, want)
	}
	own := &Listener{TrustedProxies: []string{"private_ranges"}}
	if got := c.TrustedProxiesFor(own); len(got) != 6 || !got[0].Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("private_ranges = %v", got)
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"h2c upgrade", strings.Replace(minimal, "  - upstream: api\n", "  - upstream: api\n    upgrades: [websocket, h2c]\n", 1),
			`t.yaml:5:27: routes[0].upgrades[1]: upgrade "h2c" is never forwarded`},
		{"HTTP/2.0 upgrade", strings.Replace(minimal, "  - upstream: api\n", "  - upstream: api\n    upgrades: HTTP/2.0\n", 1),
			`t.yaml:5:15: routes[0].upgrades[0]: upgrade "HTTP/2.0" is never forwarded`},
		{"bad upgrade token", strings.Replace(minimal, "  - upstream: api\n", "  - upstream: api\n    upgrades: [\"web socket\"]\n", 1),
			`t.yaml:5:16: routes[0].upgrades[0]: invalid upgrade protocol "web socket"`},
		{"bad trusted proxy", minimal + "trusted_proxies: [10.0.0.0/33]\n",
			`t.yaml:9:19: trusted_proxies[0]: invalid trusted proxy "10.0.0.0/33"`},
		{"bad listener trusted proxy", strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    trusted_proxies: [proxy.example]", 1),
			`t.yaml:3:23: listeners[0].trusted_proxies[0]: invalid trusted proxy "proxy.example"`},
		{"trust_forwarded with trusted_proxies", strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    trusted_proxies: [10.0.0.1]\n    trust_forwarded: true", 1),
			`t.yaml:4:22: listeners[0].trust_forwarded: trust_forwarded trusts every peer; use it or trusted_proxies, not both`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestBodyReadTimeoutValues: timeouts.body_read defaults to 60s and takes a negative value
// (no limit, for long client streams), which the other timeouts refuse.
func TestBodyReadTimeoutValues(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{{"", 60 * time.Second}, {"0", 60 * time.Second}, {"5s", 5 * time.Second}, {"-1", -1}, {"-1s", -time.Second}} {
		y := minimal
		if tc.v != "" {
			y = strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    timeouts: {body_read: "+tc.v+"}", 1)
		}
		c, err := Parse("t.yaml", []byte(y))
		if err != nil {
			t.Fatalf("body_read %q: %v", tc.v, err)
		}
		if got := c.Listeners[0].Timeouts.BodyRead.Std(); got != tc.want {
			t.Errorf("body_read %q: got %v, want %v", tc.v, got, tc.want)
		}
	}
	y := strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    timeouts: {body_read: soon}", 1)
	if _, err := Parse("t.yaml", []byte(y)); err == nil || !strings.Contains(err.Error(), "t.yaml:3:") || !strings.Contains(err.Error(), "body_read") {
		t.Errorf("body_read: soon: got %v, want an error naming the field", err)
	}
	y = strings.Replace(minimal, "address: 127.0.0.1:8080", "address: 127.0.0.1:8080\n    timeouts: {idle: -1s}", 1)
	if _, err := Parse("t.yaml", []byte(y)); err == nil {
		t.Error("idle: -1s was accepted")
	}
}
