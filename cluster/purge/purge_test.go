package purge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/cluster/purge"
)

// store is a cache of URLs standing in for the HTTP cache; like a disk tier, it survives
// its node's restarts.
type store struct {
	mu   sync.Mutex
	urls map[string]bool
}

func newStore(urls ...string) *store {
	s := &store{urls: map[string]bool{}}
	s.add(urls...)
	return s
}

func (s *store) add(urls ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range urls {
		s.urls[u] = true
	}
}

func (s *store) list() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(slices.Sorted(maps.Keys(s.urls)), " ")
}

func (s *store) apply(r purge.Request) (purge.Count, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n purge.Count
	for _, u := range append(slices.Clip(r.URLs), r.Prefixes...) {
		if !strings.HasPrefix(u, "https://") {
			return n, fmt.Errorf("purge needs an absolute URL, not %q", u)
		}
	}
	for u := range s.urls {
		match := r.All || slices.Contains(r.URLs, u)
		for _, p := range r.Prefixes {
			match = match || strings.HasPrefix(u, p)
		}
		if match {
			delete(s.urls, u)
			n.Objects++
			n.Memory++
		}
	}
	return n, nil
}

// TestPurgesReachEveryNode runs one three-node cluster through: a purge on n2 reaching n1
// and n3 with three confirmations; a purge while n3 is down, applied by n3 when it is back
// (its position kept in its state file); purges that left the stream while n3 was down,
// answered by dropping n3's whole cache; and a purge on a node cut off from the cluster.
func TestPurgesReachEveryNode(t *testing.T) {
	c := clustertest.Start(t, 3)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stores := []*store{
		newStore("https://a.test/x", "https://a.test/y", "https://a.test/img/1"),
		newStore("https://a.test/x", "https://a.test/y", "https://a.test/img/1"),
		newStore("https://a.test/x", "https://a.test/y", "https://a.test/img/1"),
	}
	buses := make([]*purge.Bus, 3)
	startBus := func(i int) {
		t.Helper()
		b, err := purge.Start(purge.Options{
			Node: c.Nodes[i], Apply: stores[i].apply,
			StateFile: filepath.Join(dir, fmt.Sprintf("n%d.seq", i+1)),
			Logger:    slog.New(slog.DiscardHandler),
			// Generous for a busy machine: with every node up the wait ends at the last
			// confirmation; the publishes while n3 is down pass a shorter ctx.
			AckWait: 20 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		buses[i] = b
		select {
		case <-b.Ready():
		case <-ctx.Done():
			t.Fatalf("bus of n%d not ready", i+1)
		}
	}
	stopNode := func(i int) {
		buses[i].Close()
		buses[i] = nil
		c.Kill(i)
	}
	t.Cleanup(func() {
		for _, b := range buses {
			if b != nil {
				b.Close()
			}
		}
	})
	for i := range buses {
		startBus(i)
	}

	// A purge on n2 reaches n1 and n3; all three confirm.
	stores[1].apply(purge.Request{URLs: []string{"https://a.test/x"}})
	res, err := buses[1].Publish(ctx, purge.Request{URLs: []string{"https://a.test/x"}}, purge.Count{Objects: 1, Memory: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Nodes) != 3 || fmt.Sprint(res.Members) != "[n1 n2 n3]" || len(res.Missing) != 0 || res.Sequence == 0 {
		t.Fatalf("result %+v", res)
	}
	for i, n := range res.Nodes {
		if n.Node != fmt.Sprintf("n%d", i+1) || n.Objects != 1 {
			t.Fatalf("node counts %+v", res.Nodes)
		}
	}
	for i, s := range stores {
		if got := s.list(); got != "https://a.test/img/1 https://a.test/y" {
			t.Fatalf("n%d holds %q after the purge", i+1, got)
		}
	}

	// Whoever holds the NATS token can write into the stream: garbage and a request the
	// admin API would refuse are counted as failures and skipped, and the next purge is
	// applied as usual.
	for _, bad := range []string{"garbage", `{"urls":["/relative"]}`} {
		if _, err := c.Nodes[0].JetStream().Publish(ctx, purge.Subject, []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	res, err = buses[1].Publish(ctx, purge.Request{Prefixes: []string{"https://a.test/none/"}}, purge.Count{})
	if err != nil || len(res.Nodes) != 3 {
		t.Fatalf("purge after bad messages: %+v %v", res, err)
	}
	for i, b := range buses {
		if err := b.WaitApplied(ctx, res.Sequence); err != nil {
			t.Fatal(err)
		}
		if st := b.Stats(); st.ApplyFailures != 2 {
			t.Fatalf("n%d stats %+v, want the 2 bad messages counted as failures", i+1, st)
		}
	}

	// n3 is down during a purge: the answer names it missing; back up, it applies it.
	stopNode(2)
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	res, err = buses[1].Publish(short, purge.Request{URLs: []string{"https://a.test/y"}}, purge.Count{})
	if err != nil {
		t.Fatal(err)
	}
	// (n1 may confirm late when its consumer lived on n3's server: it starts again on
	// another after two missed heartbeats.)
	if !slices.Contains(res.Missing, "n3") || len(res.Nodes) != 3-len(res.Missing) || fmt.Sprint(res.Members) != "[n1 n2 n3]" {
		t.Fatalf("with n3 down: %+v", res)
	}
	if err := buses[0].WaitApplied(ctx, res.Sequence); err != nil {
		t.Fatal(err)
	}
	if got := stores[0].list(); got != "https://a.test/img/1" {
		t.Fatalf("n1 holds %q", got)
	}
	if got := stores[2].list(); got != "https://a.test/img/1 https://a.test/y" {
		t.Fatalf("n3 applied a purge while down: %q", got)
	}
	c.Restart(t, 2)
	startBus(2)
	select {
	case <-buses[2].CaughtUp():
	case <-ctx.Done():
		t.Fatal("n3 did not catch up with the purge it missed")
	}
	if seq, _ := buses[2].Applied(); seq < res.Sequence {
		t.Fatalf("n3 caught up at sequence %d, before the purge it missed (%d)", seq, res.Sequence)
	}
	if got := stores[2].list(); got != "https://a.test/img/1" {
		t.Fatalf("n3 after its restart holds %q, want the missed purge applied", got)
	}
	if st := buses[2].Stats(); st.Received != 1 || st.Applied != 1 || st.Resyncs != 0 {
		t.Fatalf("n3 stats %+v", st)
	}

	// n3 is down while purges are published and then dropped from the stream (as MaxAge or
	// MaxBytes would): back up, it cannot know what they purged and drops everything.
	stopNode(2)
	stores[2].add("https://a.test/kept-by-n3")
	short2, cancelShort2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort2()
	first, err := buses[1].Publish(short2, purge.Request{Prefixes: []string{"https://a.test/img/"}}, purge.Count{})
	if err != nil {
		t.Fatal(err)
	}
	short3, cancelShort3 := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort3()
	last, err := buses[1].Publish(short3, purge.Request{URLs: []string{"https://a.test/none"}}, purge.Count{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Nodes[0].JetStream().Stream(ctx, purge.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(last.Sequence)); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.FirstSeq != last.Sequence || first.Sequence >= last.Sequence {
		t.Fatalf("stream after the purge: %+v %v", info, err)
	}
	c.Restart(t, 2)
	startBus(2)
	if err := buses[2].WaitApplied(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if got := stores[2].list(); got != "" {
		t.Fatalf("n3 holds %q after missing purges no longer kept, want nothing", got)
	}
	if st := buses[2].Stats(); st.Resyncs != 1 {
		t.Fatalf("n3 stats %+v, want one resync", st)
	}

	// A node cut off from the cluster cannot publish; the error says so.
	stopped := buses[0]
	c.Nodes[0].Close()
	_, err = stopped.Publish(ctx, purge.Request{All: true}, purge.Count{})
	if !errors.Is(err, cluster.ErrUnavailable) || !strings.Contains(err.Error(), "did not reach the cluster") {
		t.Fatalf("publish from a closed node: %v", err)
	}
	if st := stopped.Stats(); st.PublishFailures != 1 || st.Sent != 0 {
		t.Fatalf("n1 stats %+v", st)
	}
}
