// Package overload tells when the process is overloaded, from its CPU use, its memory and
// how long runnable goroutines wait to run (the Go scheduler's queue delay), so that the
// proxy can refuse the cheapest work first while established clients stay served.
package overload

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Thresholds say when the process is overloaded: when any set threshold is passed in a
// sample. The state clears once every measure has stayed below 80% of its threshold for
// two samples in a row. Zero fields are not checked; all zero turns the monitor off.
type Thresholds struct {
	// CPU is the share of the CPUs Go may use (GOMAXPROCS) that the process used over a
	// sample, from 0 to 1.
	CPU float64
	// Memory is the memory the Go runtime has mapped and not returned to the OS, in bytes.
	Memory int64
	// QueueDelay is the 99th percentile of the time runnable goroutines waited for a CPU
	// during a sample.
	QueueDelay time.Duration
}

// Sample is one measurement.
type Sample struct {
	CPU        float64       // share of GOMAXPROCS busy
	Memory     int64         // bytes
	QueueDelay time.Duration // p99 scheduling latency
	Overloaded bool
}

// DefaultInterval is how often the monitor samples.
const DefaultInterval = 250 * time.Millisecond

// Monitor samples the process every interval and keeps the overload state. The zero value
// is not usable; New makes one. Overloaded is safe to call from any goroutine, on the hot
// path (one atomic load).
type Monitor struct {
	th       atomic.Pointer[Thresholds]
	over     atomic.Bool
	last     atomic.Pointer[Sample]
	interval time.Duration
	log      *slog.Logger

	// Shed counts the work refused because of overload, by kind; the proxy adds to it.
	ShedConns, ShedLowPriority atomic.Uint64
	Transitions                atomic.Uint64 // times the state became overloaded

	calm    int // samples in a row below the clearing level
	cpu     cpuClock
	samples []metrics.Sample
	prevLat *metrics.Float64Histogram
	stop    context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// New returns a monitor with th; Start begins sampling. interval <= 0 means DefaultInterval.
func New(th Thresholds, interval time.Duration, log *slog.Logger) *Monitor {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Monitor{interval: interval, log: log}
	m.th.Store(&th)
	m.last.Store(&Sample{})
	m.samples = []metrics.Sample{
		{Name: "/sched/latencies:seconds"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	return m
}

// SetThresholds replaces the thresholds (a config reload).
func (m *Monitor) SetThresholds(th Thresholds) { m.th.Store(&th) }

// Overloaded reports the current state.
func (m *Monitor) Overloaded() bool { return m != nil && m.over.Load() }

// Last returns the latest sample.
func (m *Monitor) Last() Sample { return *m.last.Load() }

// Start samples every interval until Close.
func (m *Monitor) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.done = cancel, make(chan struct{})
	m.Measure() // the baseline of the deltas
	go m.run(ctx)
}

func (m *Monitor) run(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Update(m.Measure())
		}
	}
}

// Close stops sampling.
func (m *Monitor) Close() {
	m.once.Do(func() {
		if m.stop != nil {
			m.stop()
			<-m.done
		}
	})
}

// Measure takes a sample of the process since the previous Measure (not judged).
func (m *Monitor) Measure() Sample {
	var s Sample
	s.CPU = m.cpu.busy(runtime.GOMAXPROCS(0))
	metrics.Read(m.samples)
	if h := m.samples[0].Value; h.Kind() == metrics.KindFloat64Histogram {
		cur := h.Float64Histogram()
		s.QueueDelay = p99Since(cur, m.prevLat)
		m.prevLat = cloneHist(cur)
	}
	if v := m.samples[1].Value; v.Kind() == metrics.KindUint64 {
		s.Memory = int64(v.Uint64())
		if r := m.samples[2].Value; r.Kind() == metrics.KindUint64 {
			s.Memory -= int64(r.Uint64())
		}
	}
	return s
}

// Update judges a sample against the thresholds, sets the state and returns it. Tests feed
// it samples directly.
func (m *Monitor) Update(s Sample) bool {
	th := m.th.Load()
	over := th.CPU > 0 && s.CPU >= th.CPU || th.Memory > 0 && s.Memory >= th.Memory ||
		th.QueueDelay > 0 && s.QueueDelay >= th.QueueDelay
	below := (th.CPU == 0 || s.CPU < 0.8*th.CPU) && (th.Memory == 0 || float64(s.Memory) < 0.8*float64(th.Memory)) &&
		(th.QueueDelay == 0 || float64(s.QueueDelay) < 0.8*float64(th.QueueDelay))
	was := m.over.Load()
	switch {
	case over:
		m.calm = 0
		if !was {
			m.over.Store(true)
			m.Transitions.Add(1)
			m.log.Warn("overloaded: shedding low-priority routes and new connections of the busiest clients",
				"cpu", math.Round(s.CPU*100)/100, "memory", s.Memory, "queue_delay", s.QueueDelay)
		}
	case was && below:
		if m.calm++; m.calm >= 2 {
			m.over.Store(false)
			m.log.Info("no longer overloaded", "cpu", math.Round(s.CPU*100)/100, "memory", s.Memory, "queue_delay", s.QueueDelay)
		}
	case was:
		m.calm = 0
	}
	s.Overloaded = m.over.Load()
	m.last.Store(&s)
	return s.Overloaded
}

// p99Since is the 99th percentile of the observations in cur that were not in prev (bucket
// counts only grow).
func p99Since(cur, prev *metrics.Float64Histogram) time.Duration {
	var total uint64
	delta := make([]uint64, len(cur.Counts))
	for i, c := range cur.Counts {
		d := c
		if prev != nil && i < len(prev.Counts) {
			d -= prev.Counts[i]
		}
		delta[i] = d
		total += d
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(0.99 * float64(total)))
	var seen uint64
	for i, d := range delta {
		seen += d
		if seen >= want {
			hi := cur.Buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = cur.Buckets[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}

func cloneHist(h *metrics.Float64Histogram) *metrics.Float64Histogram {
	return &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}
}
