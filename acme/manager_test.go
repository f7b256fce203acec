package acme

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/verge-edge/verge/config"
)

// TestRetainStopsDroppedSites: a reload without a listener's acme stops its site; the site of
// a listener kept stays, and preparing it again with the same settings shares its state.
func TestRetainStopsDroppedSites(t *testing.T) {
	// Started sites run certmagic's background jobs, which end soon after Close cancels them
	// but may still write a lock file then: remove the directory once they have.
	dir, err := os.MkdirTemp("", "verge-acme-retain-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		guard := time.Now().Add(10 * time.Second)
		for os.RemoveAll(dir) != nil && time.Now().Before(guard) {
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	})
	m := New(Options{Dir: dir})
	defer m.Close()
	prep := func(listener string, domains ...string) *Site {
		s, err := m.Prepare(SiteConfig{Listener: listener, ACME: config.ACME{CA: "https://127.0.0.1:1/dir"}, Domains: domains})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := prep("a", "a.example"), prep("b", "b.example")
	for _, s := range []*Site{a, b} {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	a2 := prep("a", "a.example", "a2.example")
	if a2.cfg != a.cfg {
		t.Error("same settings did not share the running site's state")
	}
	if err := a2.Start(); err != nil {
		t.Fatal(err)
	}
	m.Retain([]string{"a"})
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sites) != 1 || m.sites["a"] != a2 || b.ctx.Err() == nil {
		t.Errorf("after Retain: sites %v, b stopped %v", m.sites, b.ctx.Err() != nil)
	}
	if !slices.Equal(m.sites["a"].Domains(), []string{"a.example", "a2.example"}) {
		t.Errorf("domains %v", m.sites["a"].Domains())
	}
}
