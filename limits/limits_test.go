package limits

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func key(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

// TestEstimatorErrorBound counts 200,000 distinct keys once each plus ten heavy keys, and
// checks the count-min guarantees: no estimate is below the true count, and the share of
// keys overestimated by more than ε·N is within δ (with room for chance: 2δ).
func TestEstimatorErrorBound(t *testing.T) {
	e := NewEstimatorFor(0.0005, 0.02)
	const light, heavy, heavyCount = 200_000, 10, 5_000
	var total int64
	for i := range light {
		e.Incr(key(i), 1)
		total++
	}
	for i := range heavy {
		e.Incr(key(light+i), heavyCount)
		total += heavyCount
	}
	bound := e.Epsilon() * float64(total)
	over := 0
	for i := range light + heavy {
		want := int64(1)
		if i >= light {
			want = heavyCount
		}
		got := e.Get(key(i))
		if got < want {
			t.Fatalf("key %d: estimate %d below its true count %d", i, got, want)
		}
		if float64(got-want) > bound {
			over++
		}
	}
	share := float64(over) / float64(light+heavy)
	t.Logf("width %d depth %d (%d KiB): ε·N = %.1f, keys beyond it %d (%.4f%%), δ = %.4f%%",
		e.Width(), e.Depth(), e.Width()*e.Depth()*8>>10, bound, over, 100*share, 100*e.Delta())
	if share > 2*e.Delta() {
		t.Fatalf("%.4f%% of keys overestimated beyond ε·N, the bound allows %.4f%%", 100*share, 100*e.Delta())
	}
}

// TestEstimatorKeys checks the distinct-key estimate while the keys are fewer than the width,
// and that it saturates at the width past it.
func TestEstimatorKeys(t *testing.T) {
	e := NewEstimator(4, 1<<15)
	for i := range 5000 {
		e.Incr(key(i), 3)
	}
	if k := e.Keys(); k < 4750 || k > 5250 {
		t.Fatalf("Keys() = %d for 5000 keys, want within 5%%", k)
	}
	for i := range 1 << 20 {
		e.Incr(key(i), 1)
	}
	if k := e.Keys(); k != e.Width() {
		t.Fatalf("Keys() = %d with a full row, want the width %d", k, e.Width())
	}
}

func TestSlidingWindow(t *testing.T) {
	sec := int64(time.Second)
	w := NewSlidingWindow(10, time.Second, Sizing{Keys: 64})
	now := 10 * sec // window starts at 10 s
	for i := range 10 {
		d := w.Allow([]byte("a"), now)
		if !d.Allowed || d.Remaining != int64(9-i) {
			t.Fatalf("event %d: %+v, want allowed with %d remaining", i, d, 9-i)
		}
	}
	d := w.Allow([]byte("a"), now)
	if d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("11th event: %+v, want refused with a retry time", d)
	}
	// Another key is independent.
	if d := w.Allow([]byte("b"), now); !d.Allowed {
		t.Fatalf("another key refused: %+v", d)
	}
	// Refused events are not counted: half way into the next window the previous one's 10
	// weigh 5, so 5 more fit.
	now += sec + sec/2
	for i := range 5 {
		if d := w.Allow([]byte("a"), now); !d.Allowed {
			t.Fatalf("event %d after 1.5 windows refused: %+v", i, d)
		}
	}
	d = w.Allow([]byte("a"), now)
	if d.Allowed {
		t.Fatalf("6th event after 1.5 windows allowed")
	}
	// RetryAfter is honest: waiting it lets one through.
	if d := w.Allow([]byte("a"), now+int64(d.RetryAfter)); !d.Allowed {
		t.Fatalf("refused again after waiting RetryAfter: %+v", d)
	}
	// Two idle windows forget everything.
	now += 3 * sec
	for i := range 10 {
		if d := w.Allow([]byte("a"), now); !d.Allowed {
			t.Fatalf("event %d after idle windows refused: %+v", i, d)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	ms := int64(time.Millisecond)
	b := NewTokenBucket(10, time.Second, 5, Sizing{Keys: 64})
	now := int64(time.Hour)
	for i := range 5 {
		if d := b.Allow([]byte("a"), now); !d.Allowed || d.Remaining != int64(4-i) {
			t.Fatalf("burst event %d: %+v, want allowed with %d remaining", i, d, 4-i)
		}
	}
	d := b.Allow([]byte("a"), now)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("6th event: %+v, want refused with RetryAfter 100ms", d)
	}
	if d := b.Allow([]byte("a"), now+99*ms); d.Allowed {
		t.Fatalf("allowed before a token came back: %+v", d)
	}
	if d := b.Allow([]byte("a"), now+100*ms); !d.Allowed {
		t.Fatalf("refused once a token came back: %+v", d)
	}
	if d := b.Allow([]byte("b"), now); !d.Allowed {
		t.Fatalf("another key refused: %+v", d)
	}
	// A quiet second refills the whole burst, no more.
	now += 2 * int64(time.Second)
	n := 0
	for b.Allow([]byte("a"), now).Allowed {
		n++
	}
	if n != 5 {
		t.Fatalf("after a quiet spell %d events allowed, want the burst of 5", n)
	}
}

// TestLimitersConcurrent hammers one key from several goroutines at a frozen time: neither
// limiter lets more than its limit through.
func TestLimitersConcurrent(t *testing.T) {
	now := int64(time.Hour)
	for _, l := range []Limiter{NewSlidingWindow(1000, time.Minute, Sizing{}), NewTokenBucket(1000, time.Minute, 1000, Sizing{})} {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 500 {
					if l.Allow([]byte("k"), now).Allowed {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if got := allowed.Load(); got > 1000 || got < 900 {
			t.Fatalf("%T: %d of 4000 concurrent events allowed, want at most 1000 (and most of them)", l, got)
		}
	}
}

func BenchmarkSlidingWindowAllow(b *testing.B) {
	w := NewSlidingWindow(100, time.Second, Sizing{})
	k := make([]byte, 8)
	now := Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(k, uint64(i&0xffff))
		w.Allow(k, now)
	}
}

// BenchmarkSlidingWindowMillionKeys counts a million distinct keys over and over: memory is
// the sketch's, allocated once, whatever the number of keys.
func BenchmarkSlidingWindowMillionKeys(b *testing.B) {
	w := NewSlidingWindow(100, time.Minute, Sizing{Keys: 1 << 20})
	k := make([]byte, 8)
	now := Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(k, uint64(i%1_000_000))
		w.Allow(k, now)
	}
	b.ReportMetric(float64(w.Keys()), "keys")
}

func BenchmarkTokenBucketAllow(b *testing.B) {
	t := NewTokenBucket(100, time.Second, 100, Sizing{})
	k := make([]byte, 8)
	now := Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(k, uint64(i&0xffff))
		t.Allow(k, now)
	}
}

// TestSlidingWindowShare moves counts from one window to another as two nodes would.
func TestSlidingWindowShare(t *testing.T) {
	a := NewSlidingWindow(10, time.Hour, Sizing{Keys: 64})
	b := NewSlidingWindow(10, time.Hour, Sizing{Keys: 64})
	a.Track()
	now := Now()
	for range 6 {
		a.Allow([]byte("k"), now)
	}
	wins := a.TakePending()
	if len(wins) != 1 || len(wins[0].Deltas) != 1 || wins[0].Deltas[0].Key != "k" || wins[0].Deltas[0].Count != 6 {
		t.Fatalf("pending %v", wins)
	}
	start, deltas := wins[0].Start, wins[0].Deltas
	if again := a.TakePending(); len(again) != 0 {
		t.Fatalf("pending not cleared: %v", again)
	}
	b.AddRemote(start, []byte(deltas[0].Key), deltas[0].Count)
	if e := b.Estimate([]byte("k"), now); e != 6 {
		t.Fatalf("estimate after the remote counts %d, want 6", e)
	}
	n := 0
	for b.Allow([]byte("k"), now).Allowed {
		n++
	}
	if n != 4 {
		t.Fatalf("%d more allowed, want 4", n)
	}
	b.AddRemote(start-10*int64(time.Hour), []byte("k"), 100) // an old window: ignored
	if e := b.Estimate([]byte("k"), now); e != 10 {
		t.Fatalf("estimate %d after counts of an old window, want 10", e)
	}
}

// TestTakePendingAcrossWindows: events recorded just before a window ends are still taken
// after it ended, with their window's start.
func TestTakePendingAcrossWindows(t *testing.T) {
	w := NewSlidingWindow(100, time.Second, Sizing{Keys: 64})
	w.Track()
	sec := int64(time.Second)
	base := (Now()/sec + 10) * sec // a window start
	for range 20 {
		w.Allow([]byte("k"), base+sec-1)
	}
	w.Allow([]byte("k"), base+sec)
	wins := w.TakePending()
	if len(wins) != 2 || wins[0].Start != base || wins[0].Deltas[0].Count != 20 || wins[1].Start != base+sec || wins[1].Deltas[0].Count != 1 {
		t.Fatalf("pending %+v, want 20 in the window at %d and 1 in the next", wins, base)
	}
}

// BenchmarkSlidingWindowTracked is Allow with sharing on, on keys already recorded.
func BenchmarkSlidingWindowTracked(b *testing.B) {
	w := NewSlidingWindow(1<<40, time.Hour, Sizing{})
	w.Track()
	k := make([]byte, 8)
	now := Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(k, uint64(i&0xff))
		w.Allow(k, now)
	}
}
