package acme

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	mholtacme "github.com/mholt/acmez/v3/acme"
	"github.com/verge-edge/verge/config"
)

// lookupStorage is a file storage that counts challenge lookups and can hold them until the
// caller gives up.
type lookupStorage struct {
	certmagic.Storage
	mu      sync.Mutex
	lookups int
	hold    bool
}

func (s *lookupStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if strings.Contains(key, "challenge_tokens") {
		s.mu.Lock()
		s.lookups++
		hold := s.hold
		s.mu.Unlock()
		if hold {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}
	return s.Storage.Load(ctx, key)
}

func (s *lookupStorage) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

// startSite starts a site for domains on listener against a CA nobody answers (its orders
// fail in the background; only the challenge lookups matter here).
func startSite(t *testing.T, m *Manager, listener, ca string, domains ...string) *Site {
	t.Helper()
	s, err := m.Prepare(SiteConfig{Listener: listener, ACME: config.ACME{CA: ca}, Domains: domains, HTTPAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// tempDir is a directory removed at the end as far as possible: the background orders of a
// closed manager may still write into it.
func tempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "acmetest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

const testToken = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"

// TestChallengeLookupOnlyForManagedHosts: requests under the challenge path for a host no
// site manages, or with a token that can't be one, are refused without a storage lookup; a
// lookup that hangs (a cluster electing its leader) is given up after a bound.
func TestChallengeLookupOnlyForManagedHosts(t *testing.T) {
	st := &lookupStorage{Storage: &certmagic.FileStorage{Path: tempDir(t)}}
	m := New(Options{Storage: st, Logger: slog.New(slog.DiscardHandler)})
	defer m.Close()
	startSite(t, m, "https", "https://127.0.0.1:1/dir", "a.verge.test")
	for _, tc := range []struct{ host, token string }{
		{"evil.example", testToken},
		{"evil.example:80", testToken},
		{"a.verge.test", "tok"},
		{"a.verge.test", testToken[:21]},
		{"a.verge.test", testToken + "%2F.."},
		{"a.verge.test", strings.Repeat("A", 129)},
	} {
		if _, ok := m.ServeHTTPChallenge("GET", tc.host, ChallengePrefix+tc.token); ok {
			t.Errorf("%s %s answered", tc.host, tc.token)
		}
	}
	if n := st.count(); n != 0 {
		t.Errorf("%d storage lookups for requests that can't be challenges", n)
	}
	if _, ok := m.ServeHTTPChallenge("GET", "A.verge.test.:80", ChallengePrefix+testToken); ok {
		t.Error("a challenge nobody started was answered")
	}
	if n := st.count(); n != 1 {
		t.Errorf("%d storage lookups for a managed host, want 1", n)
	}
	// A lookup that never answers is given up.
	st.mu.Lock()
	st.hold = true
	st.mu.Unlock()
	done := make(chan bool, 1)
	go func() {
		_, ok := m.ServeHTTPChallenge("GET", "a.verge.test", ChallengePrefix+testToken)
		done <- ok
	}()
	select {
	case ok := <-done:
		if ok {
			t.Error("a hung lookup answered")
		}
	case <-time.After(60 * time.Second): // a failure guard, far above the bound
		t.Fatal("a hung storage lookup holds the challenge request")
	}
}

// TestChallengeIssuerOfSite: with two sites on different CAs, a challenge another node
// started for a name of the second site (stored under its CA's prefix) is found every time.
func TestChallengeIssuerOfSite(t *testing.T) {
	st := &certmagic.FileStorage{Path: tempDir(t)}
	m := New(Options{Storage: st, Logger: slog.New(slog.DiscardHandler)})
	defer m.Close()
	startSite(t, m, "one", "https://127.0.0.1:1/one", "a.verge.test")
	two := startSite(t, m, "two", "https://127.0.0.2:1/two", "b.verge.test")
	chal := mholtacme.Challenge{Type: "http-01", Token: testToken, KeyAuthorization: testToken + ".thumbprint",
		Identifier: mholtacme.Identifier{Type: "dns", Value: "b.verge.test"}}
	b, _ := json.Marshal(chal)
	key := path.Join("acme", certmagic.StorageKeys.Safe(two.issuer.IssuerKey()), "challenge_tokens", certmagic.StorageKeys.Safe("b.verge.test")+".json")
	if err := st.Store(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		body, ok := m.ServeHTTPChallenge("GET", "b.verge.test", ChallengePrefix+testToken)
		if !ok || string(body) != chal.KeyAuthorization {
			t.Fatalf("attempt %d: %q %v, want the stored key authorization", i, body, ok)
		}
	}
	if _, ok := m.ServeHTTPChallenge("GET", "a.verge.test", ChallengePrefix+testToken); ok {
		t.Error("the challenge of b.verge.test answered for a.verge.test")
	}
}
