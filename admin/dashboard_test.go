package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTimeline is a Timeline whose points the test adds.
type fakeTimeline struct {
	mu     sync.Mutex
	points []map[string]any
	notify chan struct{}
}

func newFakeTimeline() *fakeTimeline { return &fakeTimeline{notify: make(chan struct{})} }

func (f *fakeTimeline) add(req float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.points = append(f.points, map[string]any{"seq": len(f.points) + 1, "total": map[string]any{"req": req}})
	close(f.notify)
	f.notify = make(chan struct{})
}

func (f *fakeTimeline) Points(after uint64) (any, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for i, p := range f.points {
		if uint64(i+1) > after {
			out = append(out, p)
		}
	}
	return out, uint64(len(f.points))
}

func (f *fakeTimeline) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notify
}

func (f *fakeTimeline) Interval() time.Duration { return time.Second }

// kvController is a Controller with a KV namespace "notes" kept in a map.
type kvController struct {
	fakeController
	kvMu sync.Mutex
	kv   map[string]string
	ttl  time.Duration // of the last put
}

func (k *kvController) KVNamespaces() []string { return []string{"notes"} }

func (k *kvController) ns(ns string) error {
	if ns != "notes" {
		return fmt.Errorf("namespace %q: %w", ns, ErrNotFound)
	}
	return nil
}

func (k *kvController) KVList(_ context.Context, ns string, o KVListOptions) (KVPage, error) {
	if err := k.ns(ns); err != nil {
		return KVPage{}, err
	}
	k.kvMu.Lock()
	defer k.kvMu.Unlock()
	page := KVPage{Complete: true}
	for key := range k.kv {
		if strings.HasPrefix(key, o.Prefix) {
			page.Keys = append(page.Keys, KVKey{Name: key})
		}
	}
	sort.Slice(page.Keys, func(i, j int) bool { return page.Keys[i].Name < page.Keys[j].Name })
	return page, nil
}

func (k *kvController) KVGet(_ context.Context, ns, key string) (KVEntry, error) {
	if err := k.ns(ns); err != nil {
		return KVEntry{}, err
	}
	k.kvMu.Lock()
	defer k.kvMu.Unlock()
	v, ok := k.kv[key]
	if !ok {
		return KVEntry{}, fmt.Errorf("key %q: %w", key, ErrNotFound)
	}
	return NewKVEntry(key, []byte(v), nil, time.Time{}), nil
}

func (k *kvController) KVPut(_ context.Context, ns, key string, value []byte, _ json.RawMessage, ttl time.Duration) error {
	if err := k.ns(ns); err != nil {
		return err
	}
	k.kvMu.Lock()
	defer k.kvMu.Unlock()
	k.kv[key] = string(value)
	k.ttl = ttl
	return nil
}

func (k *kvController) KVDelete(_ context.Context, ns, key string) error {
	if err := k.ns(ns); err != nil {
		return err
	}
	k.kvMu.Lock()
	defer k.kvMu.Unlock()
	delete(k.kv, key)
	return nil
}

func TestDashboardAssetsNeedNoTokenButDataDoes(t *testing.T) {
	const token = "s3cret-token-0123456789"
	base := startServer(t, &Server{Token: token, Dashboard: true, Timeline: newFakeTimeline(),
		Controller: &fakeController{ready: true}})
	for _, path := range []string{"/dashboard/", "/dashboard/app.js", "/dashboard/app.css"} {
		code, h, body := do(t, "GET", base+path, "", nil)
		if code != 200 || body == "" {
			t.Fatalf("GET %s without token: %d", path, code)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
	}
	if code, _, _ := do(t, "GET", base+"/dashboard/nope.js", "", nil); code != 404 {
		t.Errorf("missing asset: %d", code)
	}
	if code, _, _ := do(t, "GET", base+"/dashboard/../config", "", nil); code == 200 {
		t.Errorf("path escape answered 200")
	}
	for _, path := range []string{"/stats", "/stats/events", "/kv", "/cache", "/config"} {
		if code, _, _ := do(t, "GET", base+path, "", nil); code != 401 {
			t.Errorf("GET %s without token: %d, want 401", path, code)
		}
	}
	if code, _, body := do(t, "GET", base+"/stats", token, nil); code != 200 || !strings.Contains(body, `"interval_ms":1000`) {
		t.Errorf("GET /stats: %d %s", code, body)
	}
	// A page of another site, or a rebound DNS name, gets nothing, not even the assets.
	req, _ := http.NewRequest("GET", base+"/dashboard/", nil)
	req.Host = "attacker.example:80"
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("rebound Host: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func TestDashboardDisabled(t *testing.T) {
	base := startServer(t, &Server{Controller: &fakeController{ready: true}})
	for _, path := range []string{"/", "/dashboard/", "/dashboard/app.js"} {
		if code, _, _ := do(t, "GET", base+path, "", nil); code != 404 {
			t.Errorf("GET %s with the dashboard off: %d", path, code)
		}
	}
}

func TestStatsStream(t *testing.T) {
	tl := newFakeTimeline()
	tl.add(1)
	srv := &Server{Dashboard: true, Timeline: tl, Controller: &fakeController{ready: true}}
	base := startServer(t, srv)
	code, _, body := do(t, "GET", base+"/stats", "", nil)
	if code != 200 || !strings.Contains(body, `"seq":1`) {
		t.Fatalf("GET /stats: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/stats?after=x", "", nil); code != 400 {
		t.Errorf("bad after: %d", code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a failure guard
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stats/events", nil)
	req.Header.Set("Last-Event-ID", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	// Events arrive as points are added, continuing after Last-Event-ID.
	events := make(chan string, 8)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
	}()
	for _, n := range []float64{2, 3} {
		tl.add(n)
		var ev string
		select {
		case ev = <-events:
		case <-ctx.Done():
			t.Fatal("no event")
		}
		seq := int(n)
		if !strings.Contains(ev, "event: points\n") || !strings.Contains(ev, fmt.Sprintf("id: %d\n", seq)) ||
			!strings.Contains(ev, fmt.Sprintf(`"req":%d`, seq)) || strings.Contains(ev, `"seq":1,`) {
			t.Fatalf("event %d: %q", seq, ev)
		}
	}
	// Shutdown ends the stream rather than waiting for it.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with a stream open: %v", err)
	}
	for range events {
	}
}

// TestStatsStreamAfterRestart checks that a client continuing after a sequence number the
// timeline has not reached (its id from a server process that has since restarted) gets
// every kept point at once, as a new client would, not only the points sampled later.
func TestStatsStreamAfterRestart(t *testing.T) {
	tl := newFakeTimeline()
	tl.add(1)
	tl.add(2)
	srv := &Server{Timeline: tl, Controller: &fakeController{ready: true}}
	base := startServer(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a failure guard
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stats/events", nil)
	req.Header.Set("Last-Event-ID", "500")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ev strings.Builder
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no first event: %v (read %q)", err, ev.String())
		}
		if line == "\n" {
			break
		}
		ev.WriteString(line)
	}
	if s := ev.String(); !strings.Contains(s, "id: 2\n") || !strings.Contains(s, `"seq":1,`) || !strings.Contains(s, `"seq":2,`) {
		t.Fatalf("first event after a restart: %q", s)
	}
}

// TestStatsStreamClientLeaves checks that a stream whose client goes away ends (its
// handler returns and frees its place among MaxStreams) while the timeline is quiet.
func TestStatsStreamClientLeaves(t *testing.T) {
	tl := newFakeTimeline()
	tl.add(1)
	srv := &Server{Timeline: tl, Controller: &fakeController{ready: true}}
	base := startServer(t, srv)
	for i := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stats/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil { // the first event
			t.Fatal(err)
		}
		if n := srv.streams.Load(); n != 1 {
			t.Fatalf("round %d: %d streams open, want 1", i, n)
		}
		cancel()
		resp.Body.Close()
		deadline := time.Now().Add(20 * time.Second)
		for srv.streams.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the stream's handler still runs after its client left", i)
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}
}

// TestStatsStreamMountedHandlerShutdown checks that with Handler mounted on a server of
// one's own, Server.Shutdown ends the live streams, which that server's Shutdown waits for.
func TestStatsStreamMountedHandlerShutdown(t *testing.T) {
	tl := newFakeTimeline()
	tl.add(1)
	adm := &Server{Timeline: tl, Controller: &fakeController{ready: true}, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewUnstartedServer(adm.Handler())
	adm.Addr = ts.Listener.Addr().String()
	ts.Start()
	defer ts.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a failure guard
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/stats/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /stats/events: %d", resp.StatusCode)
	}
	if err := adm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("the stream did not end at Shutdown: %v", err)
	}
}

func TestStreamLimit(t *testing.T) {
	tl := newFakeTimeline()
	base := startServer(t, &Server{Dashboard: true, Timeline: tl, Controller: &fakeController{ready: true}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for i := range MaxStreams {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stats/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, resp, err)
		}
		defer resp.Body.Close()
	}
	if code, _, _ := do(t, "GET", base+"/stats/events", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("stream over the limit: %d", code)
	}
}

func TestKVEndpoints(t *testing.T) {
	c := &kvController{fakeController: fakeController{ready: true}, kv: map[string]string{}}
	base := startServer(t, &Server{Controller: c})
	key := `a/<b>&"c"`
	q := "?key=" + url.QueryEscape(key)
	if code, _, body := do(t, "PUT", base+"/kv/notes/value"+q, "", strings.NewReader(`{"value":"<script>x</script>"}`)); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	code, h, body := do(t, "GET", base+"/kv/notes/value"+q, "", nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("get: %d %v %s", code, h, body)
	}
	var e KVEntry
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Value == nil || *e.Value != "<script>x</script>" || e.Key != key {
		t.Fatalf("get: %s (%v)", body, err)
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("markup not escaped in JSON: %s", body)
	}
	if code, _, body := do(t, "GET", base+"/kv/notes?prefix=a/", "", nil); code != 200 || !strings.Contains(body, `"list_complete":true`) || !strings.Contains(body, `a/\u003cb\u003e`) {
		t.Errorf("list: %d %s", code, body)
	}
	if code, _, body := do(t, "GET", base+"/kv", "", nil); code != 200 || body != "{\"namespaces\":[\"notes\"]}\n" {
		t.Errorf("namespaces: %d %q", code, body)
	}
	if code, _, _ := do(t, "GET", base+"/kv/other", "", nil); code != 404 {
		t.Errorf("unbound namespace: %d", code)
	}
	if code, _, _ := do(t, "GET", base+"/kv/notes?limit=5000", "", nil); code != 400 {
		t.Errorf("limit over 1000: %d", code)
	}
	if code, _, _ := do(t, "PUT", base+"/kv/notes/value"+q, "", strings.NewReader(`{"value":"a","value_base64":"YQ=="}`)); code != 400 {
		t.Errorf("value and value_base64: %d", code)
	}
	// A cross-site form post cannot delete: text/plain is refused, and so is another Origin.
	req, _ := http.NewRequest("DELETE", base+"/kv/notes/value"+q, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain delete: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("DELETE", base+"/kv/notes/value"+q, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin delete: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, ok := c.kv[key]; !ok {
		t.Fatal("a refused delete deleted")
	}
	if code, _, _ := do(t, "DELETE", base+"/kv/notes/value"+q, "", strings.NewReader("{}")); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _, _ := do(t, "GET", base+"/kv/notes/value"+q, "", nil); code != 404 {
		t.Errorf("get after delete: %d", code)
	}
	// Without a KVBrowser the endpoints answer 501.
	base2 := startServer(t, &Server{Controller: &fakeController{ready: true}})
	if code, _, _ := do(t, "GET", base2+"/kv", "", nil); code != 501 {
		t.Errorf("no KV: %d", code)
	}
}

// TestKVPutTTL checks ttl_seconds: handed on as a duration, and refused (400) where the
// duration would wrap around instead of becoming a short or negative time to live.
func TestKVPutTTL(t *testing.T) {
	c := &kvController{fakeController: fakeController{ready: true}, kv: map[string]string{}}
	base := startServer(t, &Server{Controller: c})
	for _, tc := range []struct {
		ttl  string
		code int
		want time.Duration
	}{
		{"0", 200, 0},
		{"3600", 200, time.Hour},
		{fmt.Sprint(maxKVTTLSeconds), 200, time.Duration(maxKVTTLSeconds) * time.Second},
		{"-1", 400, 0},
		{fmt.Sprint(maxKVTTLSeconds + 1), 400, 0},
		{"18446744134", 400, 0}, // 2^64 ns + 60 s: wrapped, a one-minute TTL
	} {
		c.ttl = -1
		code, _, body := do(t, "PUT", base+"/kv/notes/value?key=k", "", strings.NewReader(`{"value":"v","ttl_seconds":`+tc.ttl+`}`))
		if code != tc.code {
			t.Errorf("ttl_seconds %s: got %d %s, want %d", tc.ttl, code, body, tc.code)
			continue
		}
		if code == 200 && c.ttl != tc.want {
			t.Errorf("ttl_seconds %s: got TTL %v, want %v", tc.ttl, c.ttl, tc.want)
		}
	}
}

func TestNewKVEntryBinary(t *testing.T) {
	e := NewKVEntry("k", []byte{0xff, 0, 1}, []byte("not json"), time.Time{})
	if e.Value != nil || e.ValueBase64 != "/wAB" || e.Metadata != nil || e.Size != 3 {
		t.Errorf("%+v", e)
	}
}

type cacheController struct {
	fakeController
	asked int
}

func (c *cacheController) CacheStatus() CacheStatus {
	return CacheStatus{MemoryBytes: 10, MemoryCapacity: 100}
}

func (c *cacheController) CacheTopKeys(n int) []CacheKey {
	c.asked = n
	return []CacheKey{{URL: "http://a.test/<x>", Hits: 3, Size: 5}}
}

func TestCacheEndpoints(t *testing.T) {
	c := &cacheController{fakeController: fakeController{ready: true}}
	base := startServer(t, &Server{Controller: c})
	if code, _, body := do(t, "GET", base+"/cache", "", nil); code != 200 || body != `{"memory_bytes":10,"disk_bytes":0,"memory_capacity":100,"disk_capacity":0}`+"\n" {
		t.Errorf("GET /cache: %d %s", code, body)
	}
	if code, _, body := do(t, "GET", base+"/cache/keys", "", nil); code != 200 || c.asked != 20 || !strings.Contains(body, `"url":"http://a.test/\u003cx\u003e","hits":3,"size":5`) {
		t.Errorf("GET /cache/keys: %d %s (asked %d)", code, body, c.asked)
	}
	if code, _, _ := do(t, "GET", base+"/cache/keys?limit=5", "", nil); code != 200 || c.asked != 5 {
		t.Errorf("limit=5: %d, asked %d", code, c.asked)
	}
	if code, _, _ := do(t, "GET", base+"/cache/keys?limit=101", "", nil); code != 400 {
		t.Errorf("limit=101: %d", code)
	}
	base2 := startServer(t, &Server{Controller: &fakeController{ready: true}})
	if code, _, _ := do(t, "GET", base2+"/cache/keys", "", nil); code != 501 {
		t.Errorf("no cache: %d", code)
	}
}

// TestDashboardAssetsOffline checks that the embedded pages name nothing outside the admin
// listener (the dashboard works with no internet access): links and scripts are relative,
// the style sheet loads nothing, and the script's only absolute URL is the purge form's
// example text.
func TestDashboardAssetsOffline(t *testing.T) {
	absURL := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	attr := regexp.MustCompile(`(?i)\b(src|href|action)=["']?([^"'\s>]*)`)
	err := fs.WalkDir(dashboardFiles, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(dashboardFiles, name)
		if err != nil {
			return err
		}
		text := string(b)
		for _, m := range attr.FindAllStringSubmatch(text, -1) {
			if v := m[2]; strings.Contains(v, ":") && !strings.HasPrefix(v, "data:") || strings.HasPrefix(v, "//") {
				t.Errorf("%s: %s=%q leaves the admin listener", name, m[1], v)
			}
		}
		if strings.Contains(text, "@import") || strings.Contains(text, "url(") {
			t.Errorf("%s loads a style resource (@import or url())", name)
		}
		for _, line := range strings.Split(text, "\n") {
			if absURL.MatchString(line) && !strings.Contains(line, `placeholder: "https://example.com/a.css"`) {
				t.Errorf("%s: absolute URL in %q", name, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
