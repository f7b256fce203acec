package clustered

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/verge-edge/verge/durable"
)

// TestAlarmIndexOrdering checks the memory index's rules without a cluster: this node's
// acknowledged writes and the watch's changes are ordered by revision, a removal made here
// is not undone by an older value still in flight, and a deferral moves an alarm behind
// the others on this node only.
func TestAlarmIndexOrdering(t *testing.T) {
	const ns = "idx"
	a := &Alarms{namespace: ns, log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), idx: map[durable.ID]*alarmEntry{}}
	defer func() {
		if a.timer != nil {
			a.timer.Stop()
		}
	}()
	ctx := context.Background()
	x, y := durable.IDFromName(ns, "x"), durable.IDFromName(ns, "y")
	base := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	t1, t2, t3 := base, base.Add(time.Minute), base.Add(2*time.Minute)
	put := func(id durable.ID, at time.Time, rev uint64) bool {
		return a.applyWatched(id.String(), encodeAlarm(at, 0), rev, false)
	}
	get := func(id durable.ID) (time.Time, bool) {
		al, ok, _ := a.Get(ctx, id)
		return al.At, ok
	}
	next := func() (durable.ID, bool) {
		al, ok, _ := a.Next(ctx)
		return al.ID, ok
	}

	a.applyOwn(x, t1, 0, 5)
	if put(x, t1, 5) {
		t.Fatal("the watch's copy of this node's own write counted as a change")
	}
	// Removed here; the watch still delivers a value written before the removal.
	a.mu.Lock()
	a.markPending(a.idx[x])
	a.mu.Unlock()
	put(x, t2, 6)
	if at, ok := get(x); ok {
		t.Fatalf("a value older than this node's removal came back: %v", at)
	}
	a.applyWatched(x.String(), nil, 7, true)
	if _, held := a.idx[x]; held {
		t.Fatal("the removal's marker did not end the pending entry")
	}
	if !put(x, t3, 8) {
		t.Fatal("another node's later Set not applied")
	}
	if at, ok := get(x); !ok || !at.Equal(t3) {
		t.Fatalf("after another node's Set: got %v, %v; want %v", at, ok, t3)
	}
	// A write of this node acknowledged after the watch passed its revision is stale.
	put(y, t2, 10)
	a.applyOwn(y, t1, 0, 9)
	if at, _ := get(y); !at.Equal(t2) {
		t.Fatalf("a stale own write replaced a newer value: got %v, want %v", at, t2)
	}
	// Unreadable entries are ignored.
	if a.applyWatched("not-an-id", []byte{1}, 11, false) || a.applyWatched(x.String(), []byte{1, 2}, 12, false) {
		t.Fatal("an unreadable entry counted as a change")
	}

	// y (t2) is due before x (t3); deferring y puts x first, here only.
	if id, ok := next(); !ok || id != y {
		t.Fatalf("Next: got %v, %v; want y", id, ok)
	}
	a.Defer(y, t2, t3.Add(time.Minute))
	if id, ok := next(); !ok || id != x {
		t.Fatalf("Next after deferring y: got %v, %v; want x", id, ok)
	}
	// A deferral of a value no longer current is ignored; a change ends the deferral.
	a.Defer(x, t1, t3.Add(time.Hour))
	if id, _ := next(); id != x {
		t.Fatal("a deferral of a stale value applied")
	}
	a.Defer(x, t3, time.Now().Add(time.Hour))
	a.Defer(y, t2, time.Now().Add(time.Hour))
	if id, ok := next(); ok {
		t.Fatalf("Next with every alarm deferred: got %v", id)
	}
	if a.timer == nil {
		t.Fatal("no wake-up armed for the end of the deferral")
	}
	put(y, t1, 13)
	if id, ok := next(); !ok || id != y {
		t.Fatalf("Next after y changed: got %v, %v; want y (its deferral ended)", id, ok)
	}
	if _, _, err := a.Next(canceled()); err == nil {
		t.Fatal("Next with a canceled context: no error (the scheduler would not stop)")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestAlarmBucketName(t *testing.T) {
	for _, tc := range []struct{ ns, want string }{
		{"counter", "verge_do_alarms_counter"},
		{"a-b_c", "verge_do_alarms_a-b_c"},
		{"a.b", "verge_do_alarms-" + logB32.EncodeToString([]byte("a.b"))},
	} {
		if got := AlarmBucketName(tc.ns); got != tc.want {
			t.Errorf("AlarmBucketName(%q): got %q, want %q", tc.ns, got, tc.want)
		}
	}
	if AlarmBucketName("a.b") == AlarmBucketName("a_b") {
		t.Error("two namespaces share a bucket")
	}
}
