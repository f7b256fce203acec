package admin

import (
	"strings"
	"sync"
	"testing"
)

// purgingController adds a recording Purger to the fake controller.
type purgingController struct {
	*fakeController
	mu    sync.Mutex
	calls []string
}

func (p *purgingController) record(s string) PurgeCount {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, s)
	return PurgeCount{Objects: 2, Memory: 2, Disk: 1}
}
func (p *purgingController) PurgeURL(u string) (PurgeCount, error) {
	return p.record("url:" + u), nil
}
func (p *purgingController) PurgePrefix(u string) (PurgeCount, error) {
	return p.record("prefix:" + u), nil
}
func (p *purgingController) PurgeTag(t string) PurgeCount { return p.record("tag:" + t) }
func (p *purgingController) PurgeAll() PurgeCount         { return p.record("all") }

func TestPurge(t *testing.T) {
	pc := &purgingController{fakeController: &fakeController{ready: true}}
	base := startServer(t, &Server{Controller: pc, Token: "s3cret-token-0123456789"})
	code, _, body := do(t, "POST", base+"/cache/purge", "s3cret-token-0123456789",
		strings.NewReader(`{"urls":["https://a.test/x"],"prefixes":["https://a.test/img/"],"tags":["product-1"]}`))
	if code != 200 || strings.TrimSpace(body) != `{"purged":6,"memory":6,"disk":3}` {
		t.Fatalf("got %d %s", code, body)
	}
	if got := strings.Join(pc.calls, " "); got != "url:https://a.test/x prefix:https://a.test/img/ tag:product-1" {
		t.Fatalf("calls %q", got)
	}
	pc.calls = nil
	code, _, body = do(t, "POST", base+"/cache/purge", "s3cret-token-0123456789", strings.NewReader(`{"all":true}`))
	if code != 200 || strings.TrimSpace(body) != `{"purged":2,"memory":2,"disk":1}` || len(pc.calls) != 1 || pc.calls[0] != "all" {
		t.Fatalf("purge all: got %d %s, calls %q", code, body, pc.calls)
	}
	pc.calls = nil
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{}`, 400},
		{`{"url":"x"}`, 400},
		{`not json`, 400},
		{`{"urls":["/c/1"]}`, 400},
		{`{"prefixes":["/c/"]}`, 400},
		{`{"urls":["example.com/c/1"]}`, 400},
		{`{"urls":["ftp://example.com/c/1"]}`, 400},
		{`{"urls":["https://a.test/ok"],"prefixes":["/c/"]}`, 400},
		{`{"all":false}`, 400},
	} {
		if code, _, body := do(t, "POST", base+"/cache/purge", "s3cret-token-0123456789", strings.NewReader(tc.body)); code != tc.code {
			t.Errorf("%s: got %d %s, want %d", tc.body, code, body, tc.code)
		}
	}
	if len(pc.calls) != 0 {
		t.Fatalf("rejected requests purged: %q", pc.calls)
	}
	if code, _, _ := do(t, "POST", base+"/cache/purge", "", strings.NewReader(`{"tags":["a"]}`)); code != 401 {
		t.Fatalf("unauthenticated purge: %d, want 401", code)
	}
}

func TestPurgeWithoutCache(t *testing.T) {
	base := startServer(t, &Server{Controller: &fakeController{ready: true}})
	if code, _, _ := do(t, "POST", base+"/cache/purge", "", strings.NewReader(`{"tags":["a"]}`)); code != 501 {
		t.Fatalf("got %d, want 501", code)
	}
}
