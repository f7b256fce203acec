package acl

import (
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Live holds Rules built from a Source and rebuilds them when one of the source's files
// changes (size or modification time, checked every Interval). A file that fails to parse
// keeps the rules in effect and is logged; the rules change once it parses again.
type Live struct {
	src      Source
	rules    atomic.Pointer[Rules]
	log      *slog.Logger
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex // Check
	stamps   []stamp
}

type stamp struct {
	size int64
	mod  time.Time
}

// DefaultInterval is how often Live checks its files.
const DefaultInterval = 2 * time.Second

// NewLive builds the rules (failing if a file is missing or malformed) and, when the source
// has files, watches them until Close. interval <= 0 means DefaultInterval.
func NewLive(src Source, interval time.Duration, log *slog.Logger) (*Live, error) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Live{src: src, log: log, interval: interval}
	l.stamps = l.stat()
	r, err := src.Build()
	if err != nil {
		return nil, err
	}
	l.rules.Store(r)
	if len(src.AllowFiles)+len(src.DenyFiles) > 0 {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.watch()
	}
	return l, nil
}

// Allowed applies the rules in effect to a.
func (l *Live) Allowed(a netip.Addr) bool { return l.rules.Load().Allowed(a) }

// Rules returns the rules in effect.
func (l *Live) Rules() *Rules { return l.rules.Load() }

// Close stops watching the files.
func (l *Live) Close() {
	l.once.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.done
		}
	})
}

func (l *Live) files() []string {
	return append(append([]string{}, l.src.AllowFiles...), l.src.DenyFiles...)
}

func (l *Live) stat() []stamp {
	var out []stamp
	for _, f := range l.files() {
		var s stamp
		if fi, err := os.Stat(f); err == nil {
			s = stamp{fi.Size(), fi.ModTime()}
		}
		out = append(out, s)
	}
	return out
}

// watch checks the files every interval and rebuilds the rules when one changed.
func (l *Live) watch() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.Check()
	}
}

// Check rebuilds the rules now if a file changed since the last check; the watcher calls it
// every interval, and tests or a reload may call it directly. It reports whether the rules
// were replaced.
func (l *Live) Check() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.stat()
	changed := false
	for i := range now {
		if now[i] != l.stamps[i] {
			changed = true
		}
	}
	if !changed {
		return false
	}
	r, err := l.src.Build()
	if err != nil {
		l.log.Error("ip rules: list file not reloaded; the rules in effect stay", "err", err)
		l.stamps = now // logged once per change
		return false
	}
	l.stamps = now
	l.rules.Store(r)
	l.log.Info("ip rules reloaded", "files", l.files(), "allow", r.Allow.Len(), "deny", r.Deny.Len())
	return true
}
