package ai_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/ai/aitest"
	"github.com/verge-edge/verge/internal/testnet"
)

func serve(t *testing.T, s *aitest.Server) string {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts.URL + "/v1"
}

func client(t *testing.T, ps ...ai.Provider) *ai.Client {
	t.Helper()
	c, err := ai.NewClient(ps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestFailover(t *testing.T) {
	good := &aitest.Server{Name: "good"}
	failing := &aitest.Server{Name: "bad", FailStatus: 503}
	limited := &aitest.Server{Name: "limited", FailStatus: 429}
	stall := make(chan struct{})
	defer close(stall)
	slow := &aitest.Server{Name: "slow", Stall: stall}
	c := client(t,
		ai.Provider{Name: "good", BaseURL: serve(t, good), Priority: 9},
		ai.Provider{Name: "bad", BaseURL: serve(t, failing), Priority: 1},
		ai.Provider{Name: "limited", BaseURL: serve(t, limited), Priority: 2},
		ai.Provider{Name: "down", BaseURL: "http://" + testnet.RefusedAddr(t) + "/v1", Priority: 3},
		ai.Provider{Name: "slow", BaseURL: serve(t, slow), Priority: 4, FirstTokenTimeout: 100 * time.Millisecond},
	)
	if got := strings.Join(c.Providers(), ","); got != "bad,limited,down,slow,good" {
		t.Fatalf("order %s", got)
	}
	r, err := c.Chat(context.Background(), ai.ChatRequest{Model: "m", Messages: []ai.Message{{Role: "user", Content: "hi there"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Provider != "good" || r.Text() != "hello from good" || r.Usage.PromptTokens != 2 {
		t.Errorf("got %+v from %s", r, r.Provider)
	}
	if failing.Requests() != 1 || limited.Requests() != 1 || slow.Requests() != 1 {
		t.Errorf("requests: bad %d limited %d slow %d", failing.Requests(), limited.Requests(), slow.Requests())
	}
}

func TestEveryProviderFailedNamesEach(t *testing.T) {
	c := client(t,
		ai.Provider{Name: "bad", BaseURL: serve(t, &aitest.Server{Name: "bad", FailStatus: 500})},
		ai.Provider{Name: "down", BaseURL: "http://" + testnet.RefusedAddr(t) + "/v1"},
		ai.Provider{Name: "other", BaseURL: "http://" + testnet.RefusedAddr(t) + "/v1", Models: []string{"x"}},
	)
	_, err := c.Chat(context.Background(), ai.ChatRequest{Model: "m", Messages: []ai.Message{{Role: "user", Content: "hi"}}})
	var e *ai.Error
	if !errorAs(err, &e) || e.Status != 502 || len(e.Attempts) != 2 {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{`model "m"`, `provider bad: status 500: "{\"error\":{\"message\":\"bad is failing on purpose\"}}"`, "provider down: connect: "} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	c2 := client(t, ai.Provider{Name: "only", BaseURL: "http://" + testnet.RefusedAddr(t) + "/v1", Models: []string{"x"}})
	if _, err := c2.Chat(context.Background(), ai.ChatRequest{Model: "y"}); err == nil || err.Error() != `ai: no provider serves model "y"` {
		t.Errorf("got %v", err)
	}
}

func errorAs(err error, e **ai.Error) bool {
	x, ok := err.(*ai.Error)
	*e = x
	return ok
}

func TestNoFailoverOnClientError(t *testing.T) {
	second := &aitest.Server{Name: "second"}
	c := client(t,
		ai.Provider{Name: "first", BaseURL: serve(t, &aitest.Server{Name: "first"})},
		ai.Provider{Name: "second", BaseURL: serve(t, second)},
	)
	res, err := c.Do(context.Background(), ai.Call{Path: "/chat/completions", Model: "m", Body: []byte(`{"model":""}`)})
	if err != nil {
		t.Fatal(err)
	}
	res.Close()
	if res.Status != 400 || res.Provider != "first" || second.Requests() != 0 {
		t.Errorf("status %d from %s; second got %d", res.Status, res.Provider, second.Requests())
	}
}

func TestConcurrencyCapSkipsToNext(t *testing.T) {
	stall := make(chan struct{})
	busy := &aitest.Server{Name: "busy", Stall: stall}
	c := client(t,
		ai.Provider{Name: "busy", BaseURL: serve(t, busy), MaxConcurrency: 1},
		ai.Provider{Name: "spare", BaseURL: serve(t, &aitest.Server{Name: "spare"})},
	)
	held := make(chan error, 1)
	go func() {
		r, err := c.Chat(context.Background(), ai.ChatRequest{Model: "m"})
		if err == nil && r.Provider != "busy" {
			err = io.ErrUnexpectedEOF
		}
		held <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for busy.Requests() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling for the first request to arrive
	}
	r, err := c.Chat(context.Background(), ai.ChatRequest{Model: "m"})
	if err != nil || r.Provider != "spare" {
		t.Fatalf("second request: %v %+v", err, r)
	}
	close(stall)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func TestTypedCallsInProcess(t *testing.T) {
	s := &aitest.Server{Name: "inproc", IncludeUsage: true}
	c := client(t, ai.Provider{Name: "local", Handler: s, BaseURL: "/v1", APIKey: "sk-x"})
	ctx := context.Background()
	cr, err := c.Complete(ctx, ai.CompletionRequest{Model: "m", Prompt: "a b c"})
	if err != nil || cr.Text() != "hello from inproc" || cr.Usage.PromptTokens != 3 {
		t.Fatalf("complete: %v %+v", err, cr)
	}
	er, err := c.Embed(ctx, ai.EmbeddingRequest{Model: "m", Input: []string{"x", "y"}})
	if err != nil || len(er.Data) != 2 || er.Data[1].Embedding[0] != 1 {
		t.Fatalf("embed: %v %+v", err, er)
	}
	st, err := c.ChatStream(ctx, ai.ChatRequest{Model: "m", Messages: []ai.Message{{Role: "user", Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var text strings.Builder
	var usage *ai.Usage
	for {
		ch, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(ch.Text())
		if ch.Usage != nil {
			usage = ch.Usage
		}
	}
	if text.String() != "hello from inproc" || usage == nil || usage.CompletionTokens != 3 {
		t.Errorf("stream %q usage %+v", text.String(), usage)
	}
	if a := s.Authorizations(); len(a) != 3 || a[0] != "Bearer sk-x" {
		t.Errorf("authorizations %q", a)
	}
	models := c.Models(ctx)
	if len(models) != 1 || models[0].ID != "test-model" || models[0].Provider != "local" {
		t.Errorf("models %+v", models)
	}
}

// TestStreamIsNotBuffered reads each event of a stream before the server is allowed to send
// the next: a client that buffered would wait forever (bounded by the test's deadline).
func TestStreamIsNotBuffered(t *testing.T) {
	step := make(chan struct{})
	s := &aitest.Server{Name: "s", Step: step}
	for _, p := range []ai.Provider{{Name: "http", BaseURL: serve(t, s)}, {Name: "inproc", Handler: s, BaseURL: "/v1"}} {
		c := client(t, p)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		go func() { step <- struct{}{} }() // the first event, which Do waits for
		st, err := c.ChatStream(ctx, ai.ChatRequest{Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"hello", " from", " s"} {
			if i > 0 {
				select {
				case step <- struct{}{}:
				case <-ctx.Done():
					t.Fatalf("%s: server stuck", p.Name)
				}
			}
			ch, err := st.Next()
			if err != nil || ch.Text() != want {
				t.Fatalf("%s: event %d: %v %+v", p.Name, i, err, ch)
			}
		}
		if _, err := st.Next(); err != io.EOF {
			t.Fatalf("%s: end: %v", p.Name, err)
		}
		st.Close()
		cancel()
	}
}

func gateway(t *testing.T, cfg ai.GatewayConfig) string {
	t.Helper()
	g, err := ai.NewGateway(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)
	return ts.URL
}

func post(t *testing.T, url, key, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestGatewayCacheAuthAndLimits(t *testing.T) {
	up := &aitest.Server{Name: "up"}
	c := client(t, ai.Provider{Name: "up", BaseURL: serve(t, up), APIKey: "sk-provider", Prices: map[string]ai.Price{"m": {Input: 1, Output: 2}}})
	const keyA, keyB = "client-key-aaaaaaaaaaaa", "client-key-bbbbbbbbbbbb"
	url := gateway(t, ai.GatewayConfig{Client: c, Keys: map[string]string{keyA: "a", keyB: "b"},
		Cache:     &ai.CacheConfig{TTL: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, MaxEntrySize: 1 << 16},
		RateLimit: 4, RatePeriod: time.Hour, MaxBody: 200}) + "/v1/chat/completions"
	body := `{"model":"m","messages":[{"role":"user","content":"one two"}]}`
	same := "{ \"messages\": [{\"content\":\"one two\", \"role\":\"user\"}],\n \"model\": \"m\" }"

	if res, _ := post(t, url, "", body); res.StatusCode != 401 {
		t.Errorf("no key: %d", res.StatusCode)
	}
	if res, _ := post(t, url, "wrong-key-wrong-key", body); res.StatusCode != 401 {
		t.Errorf("wrong key: %d", res.StatusCode)
	}
	res, b := post(t, url, keyA, body)
	if res.StatusCode != 200 || res.Header.Get(ai.HeaderCache) != "MISS" || res.Header.Get(ai.HeaderProvider) != "up" || !strings.Contains(b, "hello from up") {
		t.Fatalf("first: %d %v %s", res.StatusCode, res.Header, b)
	}
	res, b2 := post(t, url, keyA, same)
	if res.StatusCode != 200 || res.Header.Get(ai.HeaderCache) != "HIT" || b2 != b {
		t.Fatalf("second: %d %v %s", res.StatusCode, res.Header, b2)
	}
	if up.Requests() != 1 {
		t.Errorf("upstream got %d requests, want 1", up.Requests())
	}
	// Another client does not get a's cached answer.
	if res, _ := post(t, url, keyB, body); res.Header.Get(ai.HeaderCache) != "MISS" {
		t.Errorf("other key: %v", res.Header)
	}
	if res, _ := post(t, url, keyA, body, "Cache-Control", "no-cache"); res.Header.Get(ai.HeaderCache) != "BYPASS" || up.Requests() != 3 {
		t.Errorf("bypass: %v, %d requests", res.Header, up.Requests())
	}
	for _, a := range up.Authorizations() {
		if a != "Bearer sk-provider" {
			t.Errorf("provider saw Authorization %q", a)
		}
	}
	// a has made 3 requests (401s do not count); the 4th is allowed, the 5th refused.
	if res, _ := post(t, url, keyA, body); res.StatusCode != 200 {
		t.Errorf("4th: %d", res.StatusCode)
	}
	res, b = post(t, url, keyA, body)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" || !strings.Contains(b, "rate_limit_exceeded") {
		t.Errorf("5th: %d %v %s", res.StatusCode, res.Header, b)
	}
	if res, _ := post(t, url, keyB, strings.Repeat(" ", 200)+body); res.StatusCode != 413 {
		t.Errorf("large body: %d", res.StatusCode)
	}
}

// TestGatewayDeclaredBodyTooLarge: a Content-Length above MaxBody gets 413 at once, without
// the gateway waiting for a body the client never sends.
func TestGatewayDeclaredBodyTooLarge(t *testing.T) {
	c := client(t, ai.Provider{Name: "up", BaseURL: serve(t, &aitest.Server{Name: "up"})})
	url := gateway(t, ai.GatewayConfig{Client: c, MaxBody: 1 << 10})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("status %d, want 413", res.StatusCode)
	}
}

// TestGatewayModelExactKey: the gateway routes by the body's "model" key exactly, the key
// the provider reads, not by another casing of it that encoding/json would also accept.
func TestGatewayModelExactKey(t *testing.T) {
	c := client(t,
		ai.Provider{Name: "cheap", BaseURL: serve(t, &aitest.Server{Name: "cheap"}), Models: []string{"cheap"}},
		ai.Provider{Name: "dear", BaseURL: serve(t, &aitest.Server{Name: "dear"}), Models: []string{"dear"}})
	url := gateway(t, ai.GatewayConfig{Client: c}) + "/v1/chat/completions"
	res, b := post(t, url, "", `{"model":"dear","Model":"cheap","messages":[{"role":"user","content":"hi"}]}`)
	if res.StatusCode != 200 || res.Header.Get(ai.HeaderProvider) != "dear" {
		t.Errorf("%d from %q: %s", res.StatusCode, res.Header.Get(ai.HeaderProvider), b)
	}
	if res, b := post(t, url, "", `{"Model":"cheap","messages":[]}`); res.StatusCode != 400 || !strings.Contains(b, "model is required") {
		t.Errorf("only Model: %d %s", res.StatusCode, b)
	}
}

func TestGatewayTokenBudgetAndErrors(t *testing.T) {
	up := &aitest.Server{Name: "up"}
	c := client(t,
		ai.Provider{Name: "bad", BaseURL: serve(t, &aitest.Server{Name: "bad", FailStatus: 502})},
		ai.Provider{Name: "up", BaseURL: serve(t, up), Models: []string{"m"}})
	url := gateway(t, ai.GatewayConfig{Client: c, TokenBudget: 5, BudgetPeriod: time.Hour})
	body := `{"model":"m","messages":[{"role":"user","content":"one two"}]}`
	res, b := post(t, url+"/v1/chat/completions", "", body)
	if res.StatusCode != 200 || res.Header.Get(ai.HeaderProvider) != "up" {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	// 2 prompt + 3 completion tokens used the budget of 5.
	res, b = post(t, url+"/v1/chat/completions", "", body)
	if res.StatusCode != 429 || !strings.Contains(b, "token_budget_exceeded") {
		t.Errorf("over budget: %d %s", res.StatusCode, b)
	}
	limited := client(t, ai.Provider{Name: "limited", BaseURL: serve(t, &aitest.Server{Name: "limited", FailStatus: 429})})
	res, b = post(t, gateway(t, ai.GatewayConfig{Client: limited})+"/v1/chat/completions", "", `{"model":"m"}`)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" || !strings.Contains(b, "providers_busy") {
		t.Errorf("all rate-limited: %d %v %s", res.StatusCode, res.Header, b)
	}
	url2 := gateway(t, ai.GatewayConfig{Client: c})
	res, b = post(t, url2+"/v1/chat/completions", "", `{"model":"other"}`)
	if res.StatusCode != 502 || !strings.Contains(b, "provider bad: status 502") {
		t.Errorf("all failed: %d %s", res.StatusCode, b)
	}
	res, b = post(t, url2+"/v1/chat/completions", "", `{"messages":[]}`)
	if res.StatusCode != 400 || !strings.Contains(b, "model is required") {
		t.Errorf("no model: %d %s", res.StatusCode, b)
	}
	res, _ = post(t, url2+"/v1/other", "", `{}`)
	if res.StatusCode != 404 {
		t.Errorf("unknown path: %d", res.StatusCode)
	}
	r, err := http.Get(url2 + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	json.NewDecoder(r.Body).Decode(&list)
	r.Body.Close()
	if len(list.Data) != 2 || list.Data[0].ID != "test-model" || list.Data[1].ID != "m" {
		t.Errorf("models: %+v", list)
	}
}

// TestGatewayStreams passes a stream through event by event and caches it once complete.
func TestGatewayStreams(t *testing.T) {
	step := make(chan struct{})
	up := &aitest.Server{Name: "up", Step: step}
	c := client(t, ai.Provider{Name: "up", BaseURL: serve(t, up)})
	url := gateway(t, ai.GatewayConfig{Client: c, Cache: &ai.CacheConfig{TTL: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, MaxEntrySize: 1 << 16}})
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	go func() { step <- struct{}{} }()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(res.Body)
	for i, want := range []string{"hello", " from", " up"} {
		if i > 0 {
			select {
			case step <- struct{}{}:
			case <-ctx.Done():
				t.Fatal("stuck")
			}
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, `"content":"`+want+`"`) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
	}
	rest, _ := io.ReadAll(br)
	res.Body.Close()
	if !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("end %q", rest)
	}
	// The complete stream was cached: the same request is answered without the upstream.
	res2, b := post(t, url+"/v1/chat/completions", "", body)
	if res2.Header.Get(ai.HeaderCache) != "HIT" || !strings.Contains(b, "[DONE]") || up.Requests() != 1 {
		t.Errorf("second: %v %q %d", res2.Header, b, up.Requests())
	}
}

// TestProviderRedirectNotFollowed: a provider's redirect is its answer; the gateway never
// sends the request (or the provider's key) where the redirect points.
func TestProviderRedirectNotFollowed(t *testing.T) {
	inner := &aitest.Server{Name: "inner"}
	innerURL := serve(t, inner)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, innerURL+"/chat/completions", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	c := client(t, ai.Provider{Name: "r", BaseURL: redirector.URL + "/v1", APIKey: "sk-secret"})
	url := gateway(t, ai.GatewayConfig{Client: c})
	res, _ := post(t, url+"/v1/chat/completions", "", `{"model":"m"}`)
	if res.StatusCode != http.StatusTemporaryRedirect || inner.Requests() != 0 {
		t.Errorf("status %d; the redirect target got %d requests", res.StatusCode, inner.Requests())
	}
}

// TestGatewayStateSurvivesReload: a gateway built with its predecessor's state keeps the
// cache, the rate-limit counts and the budgets whose settings did not change.
func TestGatewayStateSurvivesReload(t *testing.T) {
	up := &aitest.Server{Name: "up"}
	c := client(t, ai.Provider{Name: "up", BaseURL: serve(t, up)})
	cfg := ai.GatewayConfig{Client: c, RateLimit: 2, RatePeriod: time.Hour, TokenBudget: 1000, BudgetPeriod: time.Hour,
		Cache: &ai.CacheConfig{TTL: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, MaxEntrySize: 1 << 16}}
	g1, _ := ai.NewGateway(cfg)
	do := func(g *ai.Gateway) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		g.ServeHTTP(w, httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"model":"m"}`)))
		return w
	}
	if w := do(g1); w.Code != 200 {
		t.Fatal(w.Code)
	}
	cfg.Reuse = g1.State()
	g2, _ := ai.NewGateway(cfg)
	if w := do(g2); w.Code != 200 || w.Header().Get(ai.HeaderCache) != "HIT" {
		t.Errorf("after the reload: %d %v, want a cache hit", w.Code, w.Header())
	}
	if w := do(g2); w.Code != 429 {
		t.Errorf("third request: %d, want 429 (the count carried over)", w.Code)
	}
	cfg.Reuse, cfg.RateLimit = g2.State(), 5 // a changed limit starts afresh
	g3, _ := ai.NewGateway(cfg)
	if w := do(g3); w.Code != 200 || w.Header().Get(ai.HeaderCache) != "HIT" {
		t.Errorf("after a limit change: %d %v", w.Code, w.Header())
	}
}

// TestGatewayDoesNotCacheCutJSON: a provider whose JSON answer is cut short by closing a
// connection without Content-Length or chunking (which looks like a clean end) is passed on
// but not cached: the next identical request reaches the provider again.
func TestGatewayDoesNotCacheCutJSON(t *testing.T) {
	var mu sync.Mutex
	n := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		mu.Unlock()
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" +
			`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hel`)
		bw.Flush()
	}))
	t.Cleanup(ts.Close)
	c := client(t, ai.Provider{Name: "cut", BaseURL: ts.URL + "/v1"})
	url := gateway(t, ai.GatewayConfig{Client: c, Cache: &ai.CacheConfig{TTL: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, MaxEntrySize: 1 << 16}})
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for i := range 2 {
		if res, _ := post(t, url+"/v1/chat/completions", "", body); res.Header.Get(ai.HeaderCache) != "MISS" {
			t.Fatalf("request %d: cache %q, want MISS", i, res.Header.Get(ai.HeaderCache))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 2 {
		t.Fatalf("the provider got %d requests, want 2 (the cut answer was cached)", n)
	}
}

// TestGatewayCacheDuplicateKeys: with a shared cache, a body with a duplicate key (which Go
// resolves to the last value, and a provider's parser may resolve to the first) cannot store
// the answer to one prompt under another's key: the provider gets the normalised body.
func TestGatewayCacheDuplicateKeys(t *testing.T) {
	// The provider answers with the first "content" in the body, as a first-wins parser would.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, after, _ := strings.Cut(string(b), `"content":"`)
		prompt, _, _ := strings.Cut(after, `"`)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "chat.completion",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": "answer to " + prompt}}}})
	}))
	t.Cleanup(ts.Close)
	c := client(t, ai.Provider{Name: "p", BaseURL: ts.URL + "/v1"})
	const keyA, keyB = "client-key-aaaaaaaaaaaa", "client-key-bbbbbbbbbbbb"
	url := gateway(t, ai.GatewayConfig{Client: c, Keys: map[string]string{keyA: "a", keyB: "b"},
		Cache: &ai.CacheConfig{TTL: time.Hour, MaxEntries: 10, MaxBytes: 1 << 20, MaxEntrySize: 1 << 16, Shared: true}})
	post(t, url+"/v1/chat/completions", keyA, `{"model":"m","messages":[{"role":"user","content":"evil"}],"messages":[{"role":"user","content":"fair"}]}`)
	res, b := post(t, url+"/v1/chat/completions", keyB, `{"model":"m","messages":[{"role":"user","content":"fair"}]}`)
	if res.StatusCode != 200 || strings.Contains(b, "answer to evil") || !strings.Contains(b, "answer to fair") {
		t.Fatalf("b got %d %s (cache %s)", res.StatusCode, b, res.Header.Get(ai.HeaderCache))
	}
}

// TestGatewayBearerSchemeCaseInsensitive: "bearer" and "BEARER" are the Bearer scheme
// (RFC 9110, section 11.1); another scheme is refused.
func TestGatewayBearerSchemeCaseInsensitive(t *testing.T) {
	c := client(t, ai.Provider{Name: "up", BaseURL: serve(t, &aitest.Server{Name: "up"})})
	const key = "client-key-aaaaaaaaaaaa"
	url := gateway(t, ai.GatewayConfig{Client: c, Keys: map[string]string{key: "a"}}) + "/v1/models"
	for auth, want := range map[string]int{"Bearer " + key: 200, "bearer " + key: 200, "BEARER  " + key: 200, "Basic " + key: 401, "Bearer": 401} {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("Authorization %q: %d, want %d", auth, res.StatusCode, want)
		}
	}
}

// TestGatewayModelNameBounded: a model name longer than MaxModelName (it goes to the access
// log) is refused with 400 before any provider is asked.
func TestGatewayModelNameBounded(t *testing.T) {
	up := &aitest.Server{Name: "up"}
	c := client(t, ai.Provider{Name: "up", BaseURL: serve(t, up)})
	url := gateway(t, ai.GatewayConfig{Client: c}) + "/v1/chat/completions"
	long := strings.Repeat("m", ai.MaxModelName+1)
	if res, b := post(t, url, "", `{"model":"`+long+`","messages":[]}`); res.StatusCode != 400 || !strings.Contains(b, "model name longer than 256 bytes") {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	if res, _ := post(t, url, "", `{"model":"`+long[1:]+`","messages":[{"role":"user","content":"hi"}]}`); res.StatusCode != 200 {
		t.Fatalf("a name of %d bytes: %d", ai.MaxModelName, res.StatusCode)
	}
	if up.Requests() != 1 {
		t.Fatalf("the provider got %d requests, want 1", up.Requests())
	}
}
