package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAIValidation(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte("0123456789abcdef0123\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "short"), []byte("tiny\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "model.bin"), []byte("x"), 0o644)
	t.Setenv("VERGE_TEST_AI_KEY", "sk-provider")
	head := "listeners: [{address: 127.0.0.1:8080}]\n"
	prov := "ai:\n  providers:\n    - {name: a, base_url: \"http://127.0.0.1:9/v1\"}\n"
	route := "routes:\n  - ai_gateway: {}\n"
	tests := []struct {
		yaml string
		want string // "" for valid
	}{
		{prov + route, ""},
		{"ai:\n  providers:\n    - {name: a, base_url: \"https://api.example/v1/\", api_key: {from_env: VERGE_TEST_AI_KEY}, models: [m1, m2], priority: 2, max_concurrency: 4, timeouts: {connect: 1s, first_token: 2s, total: 3s}, prices: {m1: {input: 0.5, output: 1.5}}}\n    - {name: l, type: local}\n    - {name: l2, type: local, model: model.bin}\n" +
			"routes:\n  - ai_gateway: {providers: [a, l], keys: [{name: team, key: {file: key}}], max_body: 64KB, cache: {ttl: 1m, max_entries: 10, max_bytes: 1MB, max_entry_size: 64KB, shared: true}, rate_limit: {requests: 5, period: 1m}, token_budget: {tokens: 1000, period: 1h}}\n", ""},
		{"ai:\n  providers:\n    - {base_url: \"http://x/v1\"}\n" + route, "v.yaml:4:7: ai.providers[0].name: name is required"},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://x/v1\"}\n    - {name: a, base_url: \"http://y/v1\"}\n" + route, `ai.providers[1].name: duplicate provider "a"`},
		{"ai:\n  providers:\n    - {name: a}\n" + route, "ai.providers[0].base_url: base_url is required for type openai"},
		{"ai:\n  providers:\n    - {name: a, base_url: \"ftp://x\"}\n" + route, `ai.providers[0].base_url: invalid base_url "ftp://x"`},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://u:p@x/v1\"}\n" + route, "must have no user, query or fragment"},
		{"ai:\n  providers:\n    - {name: a, type: grpc}\n" + route, `ai.providers[0].type: unknown provider type "grpc" (want openai or local)`},
		{"ai:\n  providers:\n    - {name: a, type: local, base_url: \"http://x\"}\n" + route, "ai.providers[0].base_url: base_url applies only to type openai"},
		{"ai:\n  providers:\n    - {name: a, type: local, model: nope.gguf}\n" + route, "ai.providers[0].model: stat "},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://x\", model: m}\n" + route, "ai.providers[0].model: model (a model file) applies only to type local"},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://x\", api_key: {from_env: VERGE_TEST_AI_UNSET}}\n" + route, "ai.providers[0].api_key.from_env: environment variable VERGE_TEST_AI_UNSET is not set"},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://x\", timeouts: {first_token: 2m, total: 1m}}\n" + route, "ai.providers[0].timeouts.first_token: is longer than timeouts.total (1m0s)"},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://x\", max_concurrency: -1}\n" + route, "ai.providers[0].max_concurrency: max_concurrency -1 out of range"},
		{"ai:\n  providers:\n    - {name: a, base_url: \"http://x\", prices: {m: {input: -1}}}\n" + route, "ai.providers[0].prices.m: prices must not be negative"},
		{route, "routes[0].ai_gateway: ai_gateway needs ai.providers"},
		{prov + "routes:\n  - ai_gateway: {providers: [b]}\n", `routes[0].ai_gateway.providers[0]: unknown AI provider "b"`},
		{prov + "routes:\n  - ai_gateway: {keys: [{name: k, key: {file: short}}]}\n", "routes[0].ai_gateway.keys[0].key: the key is 4 bytes; at least 16 are required"},
		{prov + "routes:\n  - ai_gateway: {keys: [{name: k, key: {file: key}}, {name: k, key: {file: key}}]}\n", `routes[0].ai_gateway.keys[1].name: duplicate key name "k"`},
		{prov + "routes:\n  - ai_gateway: {keys: [{name: k, key: {}}]}\n", "routes[0].ai_gateway.keys[0].key: exactly one of file and from_env is required"},
		{prov + "routes:\n  - ai_gateway: {rate_limit: {requests: 0}}\n", "routes[0].ai_gateway.rate_limit.requests: requests must be at least 1"},
		{prov + "routes:\n  - ai_gateway: {token_budget: {tokens: 0}}\n", "routes[0].ai_gateway.token_budget.tokens: tokens must be at least 1"},
		{prov + "routes:\n  - ai_gateway: {cache: {max_bytes: 1KB, max_entry_size: 2KB}}\n", "routes[0].ai_gateway.cache.max_entry_size: is larger than max_bytes (1000)"},
		{prov + "routes:\n  - ai_gateway: {}\n    respond: {body: x}\n", "routes[0]: upstream, worker, files, ai_gateway, redirect and respond are exclusive"},
		{prov + "routes:\n  - ai_gateway: {}\n    compress: {}\n", "routes[0].ai_gateway: compress and html_rewrite do not apply to ai_gateway"},
	}
	for _, tc := range tests {
		f := filepath.Join(dir, "v.yaml")
		os.WriteFile(f, []byte(head+tc.yaml), 0o644)
		_, err := Load(f)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestAIDefaults(t *testing.T) {
	c, err := Parse("v.yaml", []byte("listeners: [{address: 127.0.0.1:8080}]\nai:\n  providers: [{name: a, base_url: \"http://x/v1/\"}]\nroutes:\n  - ai_gateway: {cache: {}, rate_limit: {requests: 1}, token_budget: {tokens: 1}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := c.AI.Providers[0]
	if p.Type != "openai" || p.BaseURL != "http://x/v1" || p.MaxConcurrency != 64 ||
		p.Timeouts.Connect.Std() != 5*time.Second || p.Timeouts.FirstToken.Std() != time.Minute || p.Timeouts.Total.Std() != 10*time.Minute {
		t.Errorf("provider defaults: %+v", p)
	}
	g := c.Routes[0].AIGateway
	if g.MaxBody != 1<<20 || g.Cache.TTL.Std() != 5*time.Minute || g.Cache.MaxEntries != 1024 || g.Cache.MaxBytes != 64<<20 ||
		g.Cache.MaxEntrySize != 1<<20 || g.RateLimit.Period.Std() != time.Minute || g.TokenBudget.Period.Std() != 24*time.Hour {
		t.Errorf("gateway defaults: %+v %+v %+v %+v", g, g.Cache, g.RateLimit, g.TokenBudget)
	}
}

func TestWorkerAIBinding(t *testing.T) {
	head := "listeners: [{address: 127.0.0.1:8080}]\nroutes: [{worker: w}]\n"
	w := "workers:\n  - {name: w, module: w.wasm, ai: %s}\n"
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "w.wasm"), []byte("\x00asm"), 0o644)
	load := func(y string) (*Config, error) {
		f := filepath.Join(dir, "v.yaml")
		os.WriteFile(f, []byte(y), 0o644)
		return Load(f)
	}
	prov := "ai:\n  providers:\n    - {name: a, base_url: \"http://x/v1\"}\n    - {name: b, type: local}\n"
	c, err := load(head + prov + fmt.Sprintf(w, "{binding: AI, providers: [b]}"))
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Workers[0].AI.Granted; len(g) != 1 || g[0].Name != "b" || g[0].Type != "local" {
		t.Errorf("granted %+v", g)
	}
	c, err = load(head + prov + fmt.Sprintf(w, "{binding: AI}"))
	if err != nil || len(c.Workers[0].AI.Granted) != 2 {
		t.Errorf("all: %v %+v", err, c)
	}
	c, err = load(head + fmt.Sprintf(w, "{binding: AI}"))
	if err != nil || c.Workers[0].AI.Granted != nil {
		t.Errorf("none configured (the built-in model): %v", err)
	}
	for y, want := range map[string]string{
		head + prov + fmt.Sprintf(w, "{binding: AI, providers: [c]}"): `workers[0].ai.providers[0]: unknown AI provider "c"`,
		head + prov + fmt.Sprintf(w, "{binding: 1AI}"):                `workers[0].ai.binding: invalid binding name "1AI"`,
		head + prov + fmt.Sprintf(w, "{}"):                            `workers[0].ai.binding: invalid binding name ""`,
	} {
		if _, err := load(y); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %s", err, want)
		}
	}
}
