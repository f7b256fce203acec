package limits

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Decision is a limiter's answer for one event.
type Decision struct {
	// Allowed reports whether the event is within the limit.
	Allowed bool
	// Remaining is how many more events the key may have now (0 when refused).
	Remaining int64
	// Reset is how long until the key's quota is whole again if it sends nothing more.
	Reset time.Duration
	// RetryAfter, for a refused event, is how long until one more would be allowed if the
	// key sends nothing meanwhile; zero when allowed.
	RetryAfter time.Duration
}

// Limiter decides whether an event of a key is within its limit, and counts it when it is.
// now is a monotonic time in nanoseconds (Now, or a test's clock); calls may pass times in
// any order, but a limiter's answers assume time goes forward.
type Limiter interface {
	Allow(key []byte, now int64) Decision
	// Limit is the number of events allowed per Period.
	Limit() int64
	Period() time.Duration
	// Keys estimates how many keys the limiter is tracking.
	Keys() int
}

var (
	epoch     = time.Now()
	epochUnix = epoch.UnixNano()
)

// Now is a clock in nanoseconds for Allow: Unix time at process start, then monotonic. Fixed
// windows start at multiples of their period in Unix time, so nodes with synchronized
// clocks count in the same windows.
func Now() int64 { return epochUnix + int64(time.Since(epoch)) }

// Sizing is the memory a limiter may use: Keys is how many distinct keys it is sized to tell
// apart at once (the sketch's width is the next power of two at or above 2·Keys), Depth its
// rows. Zero fields mean DefaultKeys and DefaultDepth.
type Sizing struct {
	Keys  int
	Depth int
}

// DefaultKeys and DefaultDepth size a limiter when Sizing leaves them zero: 4 rows of 32,768
// counters, 1 MiB per sketch.
const (
	DefaultKeys  = 16384
	DefaultDepth = 4
)

func (s Sizing) sketch() *Estimator {
	k, d := s.Keys, s.Depth
	if k <= 0 {
		k = DefaultKeys
	}
	if d <= 0 {
		d = DefaultDepth
	}
	return NewEstimator(d, 2*k)
}

// SlidingWindow allows at most Limit events per key in any window of Period, estimated the
// way Cloudflare's and NGINX Plus's sliding windows are: the previous fixed window's count,
// weighted by how much of it still overlaps the sliding one, plus the current window's.
// Refused events are not counted. Two sketches of counts hold the windows.
type SlidingWindow struct {
	limit  int64
	period int64
	sizing Sizing
	state  atomic.Pointer[windows]
	mu     sync.Mutex // rotation

	// With tracking on, allowed events are also recorded per key for TakePending, to be
	// shared with other nodes.
	tracking atomic.Bool
	pmu      sync.Mutex
	pending  map[string]*int64 // allowed events per key since the last TakePending
	pstart   int64             // the window pending counts belong to
	older    map[string]*int64 // the previous window's, not yet taken
	ostart   int64
}

// MaxPendingKeys bounds the keys a SlidingWindow records between two TakePending calls;
// events of further keys are counted locally but not shared.
const MaxPendingKeys = 65536

type windows struct {
	start     int64 // start of the current fixed window
	cur, prev *Estimator
}

// NewSlidingWindow returns a limiter of limit events per period.
func NewSlidingWindow(limit int64, period time.Duration, size Sizing) *SlidingWindow {
	if limit < 1 {
		limit = 1
	}
	if period <= 0 {
		period = time.Second
	}
	w := &SlidingWindow{limit: limit, period: int64(period), sizing: size}
	cur, prev := size.sketch(), size.sketch()
	prev.seed = cur.seed // the windows swap places: a key must hash alike in both
	w.state.Store(&windows{cur: cur, prev: prev})
	return w
}

func (w *SlidingWindow) Limit() int64          { return w.limit }
func (w *SlidingWindow) Period() time.Duration { return time.Duration(w.period) }

// Keys estimates the keys counted in the current window.
func (w *SlidingWindow) Keys() int { return w.state.Load().cur.Keys() }

// at returns the windows for time now, rotating them when now is past the current one.
func (w *SlidingWindow) at(now int64) *windows {
	st := w.state.Load()
	if now < st.start+w.period {
		return st
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st = w.state.Load()
	if now < st.start+w.period {
		return st
	}
	n := (now - st.start) / w.period
	next := &windows{start: st.start + n*w.period}
	// A fresh sketch (same seed) instead of clearing the old one: no O(size) work under the
	// lock on the request path, and a request still holding the old windows never writes
	// into the new ones (the old sketch goes to the garbage collector).
	if n == 1 {
		next.cur, next.prev = st.cur.fresh(), st.cur
	} else {
		next.cur, next.prev = st.cur.fresh(), st.cur.fresh()
	}
	w.state.Store(next)
	return next
}

// Allow counts an event of key at now if the sliding window's estimate stays within the
// limit.
func (w *SlidingWindow) Allow(key []byte, now int64) Decision {
	st := w.at(now)
	h := st.cur.Hash(key)
	elapsed := now - st.start
	if elapsed < 0 {
		elapsed = 0
	}
	weight := 1 - float64(elapsed)/float64(w.period) // share of the previous window still inside
	prev := float64(st.prev.GetHash(h)) * weight
	cur := st.cur.IncrHash(h, 1)
	est := int64(math.Ceil(prev)) + cur
	if est <= w.limit {
		if w.tracking.Load() {
			w.track(key, st.start)
		}
		return Decision{Allowed: true, Remaining: w.limit - est, Reset: w.resetIn(float64(cur), prev, elapsed)}
	}
	if w.state.Load() == st {
		st.cur.IncrHash(h, -1) // refused events are not counted
	}
	cur--
	return Decision{Remaining: 0, Reset: w.resetIn(float64(cur), prev, elapsed), RetryAfter: w.retryIn(float64(cur), float64(st.prev.GetHash(h)), elapsed)}
}

// resetIn is how long until the estimate is back to zero with no more events: the end of
// the next window when the current one holds events, else when the previous one's weight
// runs out (the end of the current window).
func (w *SlidingWindow) resetIn(cur, prev float64, elapsed int64) time.Duration {
	switch {
	case cur > 0:
		return time.Duration(2*w.period - elapsed)
	case prev > 0:
		return time.Duration(w.period - elapsed)
	}
	return 0
}

// retryIn is how long until the estimate drops below the limit with no more events, given
// the current and previous windows' counts and the time into the current window.
func (w *SlidingWindow) retryIn(cur, prev float64, elapsed int64) time.Duration {
	p := float64(w.period)
	room := float64(w.limit) - 1 // the estimate must reach limit-1 for one more to fit
	if cur <= room {
		// Within this window, once the previous window's weight has shrunk enough:
		// prev·(1-f) + cur <= room.
		if prev <= 0 {
			return time.Millisecond
		}
		f := 1 - (room-cur)/prev
		d := time.Duration(f*p) - time.Duration(elapsed)
		if d < time.Millisecond {
			d = time.Millisecond
		}
		return d
	}
	// In the next window, once this window's weight has shrunk enough: cur·(1-g) <= room.
	g := 1 - room/cur
	return time.Duration(p-float64(elapsed)) + time.Duration(g*p)
}

// TokenBucket allows bursts of up to Burst events per key and refills at Limit per Period,
// with the generic cell rate algorithm: each key has a theoretical arrival time (TAT) that
// each allowed event pushes forward by Period/Limit, and an event is allowed while the TAT
// stays within Burst intervals of now. The TATs live in a sketch of d rows; a key's is the
// smallest of its d cells, and an allowed event raises each of them to the new TAT at least,
// so sharing cells with other keys can only make a key's TAT later (stricter), never
// earlier. Refused events are not counted. A key's read and raise hold one of 256 striped
// locks, so concurrent events of one key never overdraw it.
type TokenBucket struct {
	limit    int64
	period   int64
	interval int64 // period/limit
	burst    int64
	rows     int
	mask     uint64
	cells    []atomic.Int64
	sketch   *Estimator // only for its hash seed and column layout
	// stripes serialize the read-and-raise of keys hashing alike; 256 of them keep two busy
	// keys from waiting on each other in practice.
	stripes [256]stripe
}

type stripe struct {
	sync.Mutex
	_ [56]byte // a cache line each
}

// NewTokenBucket returns a limiter refilling limit events per period with bursts of burst
// (limit when burst < 1).
func NewTokenBucket(limit int64, period time.Duration, burst int64, size Sizing) *TokenBucket {
	if limit < 1 {
		limit = 1
	}
	if period <= 0 {
		period = time.Second
	}
	if burst < 1 {
		burst = limit
	}
	e := size.sketch()
	interval := int64(period) / limit
	if interval < 1 {
		interval = 1
	}
	b := &TokenBucket{limit: limit, period: int64(period), interval: interval, burst: burst, rows: e.rows, mask: e.mask, sketch: e}
	// The TATs reuse the estimator's counters: they start at zero (a TAT long past).
	b.cells = e.cells
	return b
}

func (b *TokenBucket) Limit() int64          { return b.limit }
func (b *TokenBucket) Period() time.Duration { return time.Duration(b.period) }

// Burst is the number of events allowed at once after a quiet spell.
func (b *TokenBucket) Burst() int64 { return b.burst }

// Keys estimates the keys holding a TAT (a slot that was ever raised); keys that have been
// quiet long enough to refill stay counted until their cell is reused.
func (b *TokenBucket) Keys() int { return b.sketch.Keys() }

// Allow takes one token of key's bucket at now if there is one.
func (b *TokenBucket) Allow(key []byte, now int64) Decision {
	h := b.sketch.Hash(key)
	mu := &b.stripes[h>>56]
	mu.Lock()
	defer mu.Unlock()
	tat := int64(math.MaxInt64)
	for i := range b.rows {
		if v := b.cells[b.sketch.column(h, i)].Load(); v < tat {
			tat = v
		}
	}
	if tat < now {
		tat = now
	}
	next := tat + b.interval
	window := b.burst * b.interval // how far ahead of now the TAT may run
	if next-now > window {
		return Decision{Reset: time.Duration(tat - now), RetryAfter: time.Duration(next - now - window)}
	}
	for i := range b.rows {
		c := &b.cells[b.sketch.column(h, i)]
		for {
			v := c.Load()
			if v >= next || c.CompareAndSwap(v, next) {
				break
			}
		}
	}
	return Decision{Allowed: true, Remaining: (window - (next - now)) / b.interval, Reset: time.Duration(next - now)}
}

// Track turns on recording of allowed events per key for TakePending.
func (w *SlidingWindow) Track() {
	w.pmu.Lock()
	if w.pending == nil {
		w.pending = map[string]*int64{}
	}
	w.pmu.Unlock()
	w.tracking.Store(true)
}

func (w *SlidingWindow) track(key []byte, start int64) {
	w.pmu.Lock()
	if start != w.pstart {
		// A new window: what the last one recorded is kept for the next TakePending.
		w.older, w.ostart = w.pending, w.pstart
		w.pending, w.pstart = map[string]*int64{}, start
	}
	if p, ok := w.pending[string(key)]; ok {
		*p++ // no allocation for a key already recorded
	} else if len(w.pending) < MaxPendingKeys && len(key) <= MaxSharedKeyBytes {
		n := int64(1)
		w.pending[string(key)] = &n
	}
	w.pmu.Unlock()
}

// MaxSharedKeyBytes is the longest key a SlidingWindow records for sharing; longer keys (a
// long path or header) are counted locally only.
const MaxSharedKeyBytes = 512

// Delta is one key's count to share.
type Delta struct {
	Key   string
	Count int64
}

// Window is the events of one fixed window (starting at Start) to share.
type Window struct {
	Start  int64
	Deltas []Delta
}

// TakePending returns the events recorded since the last call, by fixed window (the
// current one, and the previous one when it ended since), and forgets them.
func (w *SlidingWindow) TakePending() []Window {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	var out []Window
	for _, m := range []struct {
		start int64
		keys  map[string]*int64
	}{{w.ostart, w.older}, {w.pstart, w.pending}} {
		if len(m.keys) == 0 {
			continue
		}
		win := Window{Start: m.start, Deltas: make([]Delta, 0, len(m.keys))}
		for k, n := range m.keys {
			win.Deltas = append(win.Deltas, Delta{k, *n})
		}
		out = append(out, win)
	}
	w.older = nil
	if len(w.pending) > 0 {
		w.pending = map[string]*int64{}
	}
	return out
}

// AddRemote counts n events of key that another node allowed in the window starting at
// start: into the current window or the previous one, and not at all when older.
func (w *SlidingWindow) AddRemote(start int64, key []byte, n int64) {
	st := w.at(Now())
	switch start {
	case st.start:
		st.cur.Incr(key, n)
	case st.start - w.period:
		st.prev.Incr(key, n)
	}
}

// Estimate returns key's sliding-window estimate at now without counting an event.
func (w *SlidingWindow) Estimate(key []byte, now int64) int64 {
	st := w.at(now)
	h := st.cur.Hash(key)
	weight := 1 - float64(max(now-st.start, 0))/float64(w.period)
	return int64(math.Ceil(float64(st.prev.GetHash(h))*weight)) + st.cur.GetHash(h)
}
