package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
)

// waitTimeout guards every wait on the cluster; it is a failure bound, not a schedule.
const waitTimeout = 60 * time.Second

// watcher records a store's watch events for tests to wait on.
type watcher struct {
	mu      sync.Mutex
	seen    map[string]uint64 // ns/key -> highest sequence applied
	healthy map[string]bool
	changed chan struct{}
	// extra, when set, also receives every applied revision.
	extra atomic.Pointer[func(ns, key string, seq uint64)]
}

func watch(s *JetStreamStore) *watcher {
	w := &watcher{seen: map[string]uint64{}, healthy: map[string]bool{}, changed: make(chan struct{}, 1)}
	s.onApply = func(ns, key string, seq uint64) {
		w.mu.Lock()
		w.seen[ns+"/"+key] = max(w.seen[ns+"/"+key], seq)
		w.mu.Unlock()
		if f := w.extra.Load(); f != nil {
			(*f)(ns, key, seq)
		}
		w.notify()
	}
	s.onHealth = func(ns string, ok bool) {
		w.mu.Lock()
		w.healthy[ns] = ok
		w.mu.Unlock()
		w.notify()
	}
	return w
}

func (w *watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// until waits for cond (checked under w.mu) to hold.
func (w *watcher) until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// applied waits until the store's watch applied key at seq or later (any seq when 0).
func (w *watcher) applied(t testing.TB, ns, key string, seq uint64) {
	t.Helper()
	w.until(t, fmt.Sprintf("%s/%s to be applied", ns, key), func() bool {
		got, ok := w.seen[ns+"/"+key]
		return ok && got >= seq
	})
}

func (w *watcher) health(t testing.TB, ns string, want bool) {
	t.Helper()
	w.until(t, fmt.Sprintf("the watch of %s to be healthy=%v", ns, want), func() bool {
		ok, seen := w.healthy[ns]
		return seen && ok == want
	})
}

func newStore(t testing.TB, node *cluster.Node, o JetStreamOptions) (*JetStreamStore, *watcher) {
	s := NewJetStreamStore(node, o)
	w := watch(s)
	t.Cleanup(func() { s.Close() })
	return s, w
}

func mustNS(t testing.TB, s Store, name string) Namespace {
	t.Helper()
	n, err := s.Namespace(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestValueCacheBound(t *testing.T) {
	c := newValueCache(1000)
	var es []*jsEntry
	for i := range 100 {
		e := &jsEntry{seq: uint64(i)}
		c.add(e, make([]byte, 100))
		es = append(es, e)
		if b, _ := c.stats(); b > 1000 {
			t.Fatalf("after %d adds: %d bytes cached, bound 1000", i+1, b)
		}
	}
	// A recently read entry survives the next eviction (CLOCK's second chance).
	hot := es[99]
	hot.value()
	c.add(&jsEntry{}, make([]byte, 100))
	if hot.value() == nil {
		t.Fatal("a just-read entry was evicted first")
	}
	// Too large for the cache: indexed, not cached.
	big := &jsEntry{}
	c.add(big, make([]byte, 200))
	if big.value() != nil {
		t.Fatal("a value over an eighth of the cache was cached")
	}
	for _, e := range es {
		c.drop(e)
	}
	c.drop(hot)
	if b, n := c.stats(); b > 100 || n > 1 {
		t.Fatalf("after dropping: %d bytes in %d values", b, n)
	}
}

func TestBucketNames(t *testing.T) {
	names := []string{"TEST", "my_ns", "a-b", "a.b", "a_b", "a-_b", "MY.NS", "my.ns", "_x", "x.",
		strings.Repeat("a.", 64), strings.Repeat(".-", 63) + "a."}
	seen := map[string]string{}
	for _, n := range names {
		if !validName.MatchString(n) {
			continue
		}
		b := BucketName(n)
		if len(b) > 252 {
			t.Errorf("%q: bucket %q is %d characters, more than a stream name allows", n, b, len(b))
		}
		for _, r := range b {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				t.Errorf("%q: bucket %q holds %q", n, b, r)
			}
		}
		if !strings.HasPrefix(b, "verge") {
			t.Errorf("%q: bucket %q does not start with verge", n, b)
		}
		if o, dup := seen[b]; dup {
			t.Errorf("%q and %q share bucket %q", n, o, b)
		}
		seen[b] = n
		if back, ok := NamespaceOfBucket(b); !ok || back != n {
			t.Errorf("%q: bucket %q decodes to %q, %v", n, b, back, ok)
		}
	}
	for _, b := range []string{"verge_kv-", "verge_kv-MFRGG", "verge_kv_", "KV_x", "verge_deploy", "verge_kv-!!"} {
		if n, ok := NamespaceOfBucket(b); ok {
			t.Errorf("bucket %q decodes to namespace %q", b, n)
		}
	}
}

// TestJetStreamCluster runs the KV behaviour on a three-node cluster: the shared
// conformance tests, replication to the other nodes' caches, a node lost and restarted,
// and the loss of quorum.
func TestJetStreamCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	c := clustertest.Start(t, 3)
	ctx := context.Background()

	t.Run("Conformance", func(t *testing.T) {
		var seq atomic.Int32
		runConformance(t, backend{
			open: func(t *testing.T) Namespace {
				s, _ := newStore(t, c.Nodes[0], JetStreamOptions{})
				return mustNS(t, s, fmt.Sprintf("conf.%d", seq.Add(1)))
			},
			setNow: func(n Namespace, now func() time.Time) { n.(*jsNS).s.now = now },
		})
	})

	s1, w1 := newStore(t, c.Nodes[0], JetStreamOptions{})
	s2, w2 := newStore(t, c.Nodes[1], JetStreamOptions{})
	s3, w3 := newStore(t, c.Nodes[2], JetStreamOptions{})
	n1, n2, n3 := mustNS(t, s1, "shared"), mustNS(t, s2, "shared"), mustNS(t, s3, "shared")
	for _, w := range []*watcher{w1, w2, w3} {
		w.health(t, "shared", true)
	}

	t.Run("Replicates", func(t *testing.T) {
		// Keys that are not valid NATS subjects or JetStream keys as they are.
		keys := []string{"plain", "a.b", "a..b", ".", "..x", "*", ">", "a b", "ключ", "x\x00y", "\xff\xfe",
			"$KV.other.key", "a/b=c", strings.Repeat("k", MaxKeyBytes)}
		exp := time.Now().Add(time.Hour).Truncate(time.Second)
		for i, k := range keys {
			if k == "." {
				continue // CheckKey refuses it, as on Cloudflare
			}
			if err := n1.Put(ctx, k, []byte(fmt.Sprint("v", i)), PutOptions{Metadata: []byte(fmt.Sprint(`{"i":`, i, `}`)), Expiration: exp}); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
		}
		for i, k := range keys {
			if k == "." {
				continue
			}
			w2.applied(t, "shared", k, 0)
			w3.applied(t, "shared", k, 0)
			for _, n := range []Namespace{n2, n3} {
				e, err := n.Get(ctx, k)
				if err != nil || e == nil || string(e.Value) != fmt.Sprint("v", i) || string(e.Metadata) != fmt.Sprint(`{"i":`, i, `}`) || !e.Expiration.Equal(exp) {
					t.Fatalf("get %q on another node: got %+v, %v", k, e, err)
				}
			}
		}
		// The list is in byte order of the keys, the same from the cache and from JetStream.
		res, err := n2.List(ctx, ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		direct := NewJetStreamStoreConn(c.Nodes[1].Conn(), c.Nodes[1].JetStream(), JetStreamOptions{Direct: true})
		defer direct.Close()
		resJS, err := mustNS(t, direct, "shared").List(ctx, ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Keys) != len(keys)-1 || len(resJS.Keys) != len(res.Keys) {
			t.Fatalf("list: %d keys from the cache, %d from JetStream, want %d", len(res.Keys), len(resJS.Keys), len(keys)-1)
		}
		for i := range res.Keys {
			if i > 0 && res.Keys[i-1].Name >= res.Keys[i].Name {
				t.Fatalf("list not in byte order: %q before %q", res.Keys[i-1].Name, res.Keys[i].Name)
			}
			a, b := res.Keys[i], resJS.Keys[i]
			if a.Name != b.Name || !bytes.Equal(a.Metadata, b.Metadata) || !a.Expiration.Equal(b.Expiration) {
				t.Fatalf("key %d: cache %+v, JetStream %+v", i, a, b)
			}
		}
		// A delete reaches the other nodes too.
		w2.mu.Lock()
		before := w2.seen["shared/plain"]
		w2.mu.Unlock()
		if err := n1.Delete(ctx, "plain"); err != nil {
			t.Fatal(err)
		}
		w2.applied(t, "shared", "plain", before+1)
		if n2.(*jsNS).idxHas("plain") {
			t.Fatal("n2's index still holds the deleted key")
		}
		if e, err := n2.Get(ctx, "plain"); e != nil || err != nil {
			t.Fatalf("deleted key on n2: %+v, %v", e, err)
		}
	})

	t.Run("Isolation", func(t *testing.T) {
		// Names that differ only where a naive bucket encoding would merge them.
		a, b, d := mustNS(t, s1, "iso.a"), mustNS(t, s1, "iso_a"), mustNS(t, s1, "iso-a")
		for i, n := range []Namespace{a, b, d} {
			if err := n.Put(ctx, "k", []byte{byte('0' + i)}, PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		direct := NewJetStreamStoreConn(c.Nodes[2].Conn(), c.Nodes[2].JetStream(), JetStreamOptions{Direct: true})
		defer direct.Close()
		for i, name := range []string{"iso.a", "iso_a", "iso-a"} {
			e, err := mustNS(t, direct, name).Get(ctx, "k")
			if err != nil || e == nil || e.Value[0] != byte('0'+i) {
				t.Fatalf("%s: got %+v, %v", name, e, err)
			}
		}
		names, err := s2.Names(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"iso.a", "iso_a", "iso-a", "shared"} {
			found := false
			for _, n := range names {
				found = found || n == want
			}
			if !found {
				t.Fatalf("namespaces %v lack %q", names, want)
			}
		}
	})

	t.Run("Attacks", func(t *testing.T) {
		// Metadata that would be a header line if it were written as one, and a value that
		// looks like a delete marker: both are stored as data.
		meta := []byte("x\r\nKV-Operation: DEL\r\nNats-TTL: 1s\r\n\r\n")
		if err := n1.Put(ctx, "inj", []byte("KV-Operation: DEL"), PutOptions{Metadata: meta}); err != nil {
			t.Fatal(err)
		}
		w2.applied(t, "shared", "inj", 0)
		e, err := n2.Get(ctx, "inj")
		if err != nil || e == nil || !bytes.Equal(e.Metadata, meta) || string(e.Value) != "KV-Operation: DEL" {
			t.Fatalf("header injection: got %+v, %v", e, err)
		}
		// A key naming another bucket's subject stays in this namespace.
		if err := n1.Put(ctx, "$KV.verge_kv_other.aw", []byte("x"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		direct := NewJetStreamStoreConn(c.Nodes[0].Conn(), c.Nodes[0].JetStream(), JetStreamOptions{Direct: true})
		defer direct.Close()
		if res, err := mustNS(t, direct, "other").List(ctx, ListOptions{}); err != nil || len(res.Keys) != 0 {
			t.Fatalf("a key of shared reached namespace other: %+v, %v", res, err)
		}
		// The largest value there is: replicated, read on another node (too large for
		// its cache, so from JetStream), and one byte more is refused before it is sent.
		huge := bytes.Repeat([]byte("v"), MaxValueBytes)
		huge[0], huge[len(huge)-1] = 'a', 'z'
		if err := n1.Put(ctx, "huge", huge, PutOptions{}); err != nil {
			t.Fatalf("put of %d bytes: %v", len(huge), err)
		}
		w3.applied(t, "shared", "huge", 0)
		if e, err := n3.Get(ctx, "huge"); err != nil || e == nil || !bytes.Equal(e.Value, huge) {
			n := -1 // no entry
			if e != nil {
				n = len(e.Value)
			}
			t.Fatalf("huge value on n3: %v (%d bytes)", err, n)
		}
		if err := n1.Put(ctx, "huge", append(huge, 'x'), PutOptions{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("put of %d bytes: got %v, want ErrInvalid", len(huge)+1, err)
		}
		if err := n1.Delete(ctx, "huge"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DirectListOfManyKeys", func(t *testing.T) {
		// A listing read from JetStream (verge kv list, or a node whose watch is down) of
		// more keys than one pull brings: it once made a new consumer for every 500 keys,
		// and a pull that reached one before its server listened failed the listing with
		// "no responders" (verge kv list of a few thousand keys failed every time).
		const keys, writers = 3000, 16
		many := mustNS(t, s1, "many")
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < keys; i += writers {
					if err := many.Put(ctx, fmt.Sprintf("k%05d", i), []byte("v"), PutOptions{}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i, node := range c.Nodes {
			direct := NewJetStreamStoreConn(node.Conn(), node.JetStream(), JetStreamOptions{Direct: true})
			ns := mustNS(t, direct, "many")
			for round := 0; round < 20; round++ {
				res, err := ns.List(ctx, ListOptions{Prefix: "k0", Limit: 10})
				if err != nil || len(res.Keys) != 10 || res.Keys[0].Name != "k00000" || res.ListComplete {
					direct.Close()
					t.Fatalf("node %d, listing %d: got %+v, %v; want the first 10 of %d keys", i, round, res, err, keys)
				}
			}
			direct.Close()
		}
	})

	t.Run("NodeLost", func(t *testing.T) {
		c.Kill(2)
		for i := range 5 {
			k := fmt.Sprint("down", i)
			if err := n1.Put(ctx, k, []byte("while n3 was down"), PutOptions{}); err != nil {
				t.Fatalf("put with one node down: %v", err)
			}
			w2.applied(t, "shared", k, 0)
			if e, err := n2.Get(ctx, k); err != nil || e == nil {
				t.Fatalf("get on n2 with one node down: %+v, %v", e, err)
			}
		}
		if err := n2.Delete(ctx, "a.b"); err != nil {
			t.Fatalf("delete with one node down: %v", err)
		}
		node := c.Restart(t, 2)
		s3b, w3b := newStore(t, node, JetStreamOptions{})
		n3b := mustNS(t, s3b, "shared")
		w3b.health(t, "shared", true)
		for i := range 5 {
			if e, err := n3b.Get(ctx, fmt.Sprint("down", i)); err != nil || e == nil || string(e.Value) != "while n3 was down" {
				t.Fatalf("restarted node missed a write: %+v, %v", e, err)
			}
		}
		if e, err := n3b.Get(ctx, "a.b"); e != nil || err != nil {
			t.Fatalf("restarted node still has a deleted key: %+v, %v", e, err)
		}
	})

	t.Run("QuorumLost", func(t *testing.T) {
		// A store with a cache TTL that is over at once: its reads go to JetStream, and
		// answer from the cache when JetStream does not.
		sTTL, wTTL := newStore(t, c.Nodes[0], JetStreamOptions{CacheTTL: time.Nanosecond})
		nTTL := mustNS(t, sTTL, "shared")
		wTTL.health(t, "shared", true)
		if e, err := nTTL.Get(ctx, "a..b"); err != nil || e == nil {
			t.Fatalf("warm up: %+v, %v", e, err)
		}
		c.Kill(1)
		c.Kill(2)
		err := n1.Put(ctx, "nq", []byte("x"), PutOptions{})
		if !errors.Is(err, cluster.ErrUnavailable) {
			t.Fatalf("put without quorum: got %v, want cluster.ErrUnavailable", err)
		}
		t.Logf("put without quorum: %v", err)
		if err := n1.Delete(ctx, "a..b"); !errors.Is(err, cluster.ErrUnavailable) {
			t.Fatalf("delete without quorum: got %v, want cluster.ErrUnavailable", err)
		}
		// Whether the watch notices depends on where the consumer runs (a consumer on this
		// node's own server still beats without quorum, and rightly: nothing can change),
		// so reads are checked either way.
		for _, n := range []Namespace{n1, nTTL} {
			if e, err := n.Get(ctx, "a..b"); err != nil || e == nil || string(e.Value) == "" {
				t.Fatalf("cached read without quorum: %+v, %v", e, err)
			}
		}
		if res, err := n1.List(ctx, ListOptions{Prefix: "down"}); err != nil || len(res.Keys) != 5 {
			t.Fatalf("list without quorum: %+v, %v", res, err)
		}
	})
}

// idxHas reports whether the index holds key (a tombstone counts).
func (n *jsNS) idxHas(key string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.idx[key] != nil
}

// TestJetStreamUnreachable, on a one-node cluster: the cache TTL bounds staleness while the
// watch is down; a small cache still answers right; then, with the only node gone, cached
// keys still answer, misses and writes fail with cluster.ErrUnavailable, and opening a
// namespace does not block.
func TestJetStreamUnreachable(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx := context.Background()

	t.Run("CacheTTL", func(t *testing.T) {
		// While the watch is down, a cached entry is served for up to the cache TTL, then
		// read from JetStream again.
		a, wa := newStore(t, c.Nodes[0], JetStreamOptions{CacheTTL: time.Minute})
		b, _ := newStore(t, c.Nodes[0], JetStreamOptions{Direct: true})
		na, nb := mustNS(t, a, "ttl"), mustNS(t, b, "ttl")
		wa.health(t, "ttl", true)
		if err := na.Put(ctx, "k", []byte("old"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		a.now = func() time.Time { return now }
		ns := na.(*jsNS)
		ns.mu.Lock()
		ns.active = nil // the watch's deliveries are ignored from now on, as a stopped watch's
		ns.mu.Unlock()
		ns.setUnhealthy(errors.New("test"))
		if err := nb.Put(ctx, "k", []byte("new"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(59 * time.Second)
		if e, err := na.Get(ctx, "k"); err != nil || e == nil || string(e.Value) != "old" {
			t.Fatalf("within the cache TTL: got %+v, %v; want the cached value", e, err)
		}
		now = now.Add(2 * time.Second)
		if e, err := na.Get(ctx, "k"); err != nil || e == nil || string(e.Value) != "new" {
			t.Fatalf("after the cache TTL: got %+v, %v; want the value read from JetStream", e, err)
		}
		if res, err := na.List(ctx, ListOptions{}); err != nil || len(res.Keys) != 1 {
			t.Fatalf("list after the cache TTL: %+v, %v", res, err)
		}
	})

	t.Run("CacheSize", func(t *testing.T) {
		// A cache smaller than the values: every read is still right, and the cache stays
		// within its bound.
		const size = 4 << 10
		a, wa := newStore(t, c.Nodes[0], JetStreamOptions{CacheSize: size})
		na := mustNS(t, a, "small")
		wa.health(t, "small", true)
		for i := range 64 {
			if err := na.Put(ctx, fmt.Sprint("k", i), bytes.Repeat([]byte{byte(i)}, 300), PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 2 {
			for i := range 64 {
				e, err := na.Get(ctx, fmt.Sprint("k", i))
				if err != nil || e == nil || !bytes.Equal(e.Value, bytes.Repeat([]byte{byte(i)}, 300)) {
					t.Fatalf("round %d key %d: %v, %v", round, i, e, err)
				}
				if got, _ := a.cache.stats(); got > size {
					t.Fatalf("cache holds %d bytes, bound %d", got, size)
				}
			}
		}
	})

	s, w := newStore(t, c.Nodes[0], JetStreamOptions{})
	sTTL, wTTL := newStore(t, c.Nodes[0], JetStreamOptions{CacheTTL: time.Nanosecond})
	n, nTTL := mustNS(t, s, "ns"), mustNS(t, sTTL, "ns")
	w.health(t, "ns", true)
	wTTL.health(t, "ns", true)
	if err := n.Put(ctx, "k", []byte("v"), PutOptions{Metadata: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	wTTL.applied(t, "ns", "k", 0)
	c.Kill(0)
	wTTL.health(t, "ns", false)
	w.health(t, "ns", false)
	for _, x := range []Namespace{n, nTTL} {
		if e, err := x.Get(ctx, "k"); err != nil || e == nil || string(e.Value) != "v" || string(e.Metadata) != "m" {
			t.Fatalf("cached read: %+v, %v", e, err)
		}
		if res, err := x.List(ctx, ListOptions{}); err != nil || len(res.Keys) != 1 {
			t.Fatalf("cached list: %+v, %v", res, err)
		}
	}
	if _, err := nTTL.Get(ctx, "missing"); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("miss with the cluster gone: got %v, want cluster.ErrUnavailable", err)
	}
	if err := n.Put(ctx, "k2", []byte("v"), PutOptions{}); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("put with the cluster gone: got %v, want cluster.ErrUnavailable", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Namespace(ctx, "new")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("namespace with the cluster gone: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Namespace blocked with the cluster gone")
	}
	nn := mustNS(t, s, "new")
	if _, err := nn.Get(ctx, "k"); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("get from a namespace never loaded: got %v, want cluster.ErrUnavailable", err)
	}
}

// TestPlacementErrorNamesTheCause: a bucket that JetStream cannot place (fewer servers up
// than replicas, a new cluster with one node started) fails with a message that says what
// to do, still as cluster.ErrUnavailable.
func TestPlacementErrorNamesTheCause(t *testing.T) {
	err := jsError(context.Background(), "put to ns", errors.New("nats: API error: code=503 err_code=10005 description=insufficient resources: no suitable peers for placement"))
	if !errors.Is(err, cluster.ErrUnavailable) || !strings.Contains(err.Error(), "fewer JetStream servers are up than the bucket's replicas") {
		t.Fatalf("got %v", err)
	}
}
