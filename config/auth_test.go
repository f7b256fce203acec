package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const authBase = `listeners: [{address: 127.0.0.1:8080}]
upstreams: [{name: api, servers: [{address: 127.0.0.1:9000}]}]
routes:
  - upstream: api
`

const bcryptHash = "$2y$10$abcdefghijklmnopqrstuu5l1FfW1e0C5d0VrTOeZl1mR2bJ9/5Ee"

// TestAuthConfigErrors: each mistake in the auth, cors, rewrite, header-rule, request_id
// and access-log template sections is an error naming the file, line and field.
func TestAuthConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"    auth: {}\n", "v.yaml:5:11: routes[0].auth: exactly one of basic, jwt and forward is required"},
		{"    auth: {basic: {users: {bob: plain}}}\n", "routes[0].auth.basic.users.bob: user \"bob\": the password must be a bcrypt hash"},
		{"    auth: {basic: {}}\n", "routes[0].auth.basic.users: at least one user"},
		{"    auth: {jwt: {jwks_url: 'https://x/jwks', algorithms: [HS256]}}\n", `routes[0].auth.jwt.algorithms[0]: algorithm "HS256" not allowed`},
		{"    auth: {jwt: {jwks_url: 'https://x/jwks', algorithms: [none]}}\n", "HMAC and none are refused"},
		{"    auth: {jwt: {jwks_url: 'ftp://x/jwks'}}\n", "routes[0].auth.jwt.jwks_url: \"ftp://x/jwks\" is not an http or https URL"},
		{"    auth: {jwt: {jwks_url: 'https://x/jwks', refetch_interval: 10ms}}\n", "refetch_interval must be at least 1s"},
		{"    auth: {forward: {url: 'http://a/check', cache: 1h}}\n", "routes[0].auth.forward.cache: cache 1h0m0s out of range 0..5m"},
		{"    cors: {allow_origins: ['*'], allow_credentials: true}\n", `routes[0].cors.allow_origins[0]: "*" with allow_credentials`},
		{"    cors: {allow_origins: ['https://a.*.com']}\n", "a wildcard may only be the first label"},
		{"    cors: {allow_origins: ['https://a.com/path']}\n", "want scheme://host[:port] (no path)"},
		{"    rewrite: {regex: '^/old/(.*)$', to: '/new/$2'}\n", "routes[0].rewrite.to: $2: the expression has 1 groups"},
		{"    rewrite: {regex: '^/old/(.*$', to: '/new/$1'}\n", "routes[0].rewrite.regex: error parsing regexp"},
		{"    rewrite: {regex: '^/old/(.*)$'}\n", "regex and to go together"},
		{"    rewrite: {strip_prefix: api}\n", "strip_prefix must be a path starting with /"},
		{"    request_headers: {rules: [{when: {status: '5xx'}, set: {X: y}}]}\n", "routes[0].request_headers.rules[0].when.status: status is a condition of response_headers only"},
		{"    response_headers: {rules: [{when: {status: '7xx'}, set: {X: y}}]}\n", `invalid status "7xx"`},
		{"access_log: {format: template, template: '{client} {nope}'}\n", "access_log.template: unknown field {nope}"},
		{"access_log: {format: template}\n", "format template needs a template"},
		{"access_log: {format: apache}\n", `unknown format "apache" (want json, text, combined or template)`},
		{"request_id: {enabled: true, trust: everyone}\n", `request_id.trust: unknown trust "everyone"`},
	} {
		_, err := Parse("v.yaml", []byte(authBase+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", strings.TrimSpace(tc.yaml), err, tc.want)
		}
	}
}

// Basic users with different bcrypt costs would tell known user names from unknown ones by
// the time a wrong password takes: a config error naming the user.
func TestBasicMixedCostsRefused(t *testing.T) {
	low := "$2y$04$" + bcryptHash[7:]
	y := authBase + `    auth: {basic: {users: {bob: "` + bcryptHash + `", ann: "` + low + `"}}}` + "\n"
	_, err := Parse("v.yaml", []byte(y))
	want := `v.yaml:5:`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "routes[0].auth.basic.users.bob") ||
		!strings.Contains(err.Error(), "every user must have the same cost") {
		t.Errorf("got %v, want an error at %s naming routes[0].auth.basic.users.bob and the costs", err, want)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("carol:"+low+"\n"), 0o600)
	f := filepath.Join(dir, "v.yaml")
	os.WriteFile(f, []byte(authBase+`    auth: {basic: {users_file: htpasswd, users: {bob: "`+bcryptHash+`"}}}`+"\n"), 0o644)
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "same cost") {
		t.Errorf("users and users_file of different costs: got %v", err)
	}
}

func TestAuthConfigValid(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("# users\ncarol:"+bcryptHash+"\n"), 0o600)
	y := authBase + `    auth: {basic: {users_file: htpasswd, users: {bob: "` + bcryptHash + `"}}}
    cors: {allow_origins: ['https://*.example.com']}
    rewrite: {strip_prefix: /api, regex: '^/v1/(?P<rest>.*)$', to: '/v2/${rest}', add_prefix: /x}
    response_headers: {rules: [{when: {status: '4xx,500-599', path_prefix: /a, headers: {Content-Type: '*'}}, set: {Cache-Control: no-store}}]}
access_log: {format: template, template: '{client} {method} {uri} {status} {duration_ms} {request_id}'}
request_id: {enabled: true}
`
	f := filepath.Join(dir, "v.yaml")
	os.WriteFile(f, []byte(y), 0o644)
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	if r.Auth.Basic.Realm != "restricted" || r.Auth.Basic.UsersFile != filepath.Join(dir, "htpasswd") {
		t.Errorf("basic defaults: %+v", r.Auth.Basic)
	}
	if c.RequestID.Header != "X-Request-ID" || c.RequestID.Trust != "trusted_proxies" || !*c.RequestID.Response {
		t.Errorf("request_id defaults: %+v", c.RequestID)
	}
	if len(r.CORS.AllowMethods) != 3 || r.CORS.MaxAge.Std().Seconds() != 5 {
		t.Errorf("cors defaults: %+v", r.CORS)
	}
}

// TestRewriteOnFilesRouteRefused: a files route serves the request path under its root, so a
// rewrite there would be silently ignored; it is a config error instead.
func TestRewriteOnFilesRouteRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := Parse("r.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
routes:
  - files: {root: `+dir+`}
    rewrite: {strip_prefix: /static}
`))
	if err == nil || !strings.Contains(err.Error(), "routes[0].rewrite: rewrite changes the request sent upstream") {
		t.Fatalf("got %v", err)
	}
}
