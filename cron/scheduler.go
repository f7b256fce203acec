package cron

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Trigger is one cron expression of one worker.
type Trigger struct {
	// Worker names the worker whose scheduled handler runs.
	Worker string
	// Cron is the expression as configured (Parse).
	Cron string
}

// Event is one firing of a trigger.
type Event struct {
	// Worker names the worker.
	Worker string
	// Cron is the trigger's expression, as configured.
	Cron string
	// Time is the slot: the minute the schedule names, in UTC (not when it actually ran).
	Time time.Time
}

// Claims records the latest fired slot of each trigger, so that a slot fires once: across
// restarts (FileClaims) and across the nodes of a cluster (JetStreamClaims).
type Claims interface {
	// Claim records slot as key's latest fired slot unless an equal or later one is
	// recorded, and reports whether it did: true means the caller runs the slot.
	Claim(ctx context.Context, key string, slot time.Time) (bool, error)
	// Last returns key's latest recorded slot, the zero Time when none is.
	Last(ctx context.Context, key string) (time.Time, error)
}

// FireFunc runs a slot's event (the worker's scheduled handler). Its error counts the firing
// as failed.
type FireFunc func(ctx context.Context, ev Event) error

// Options configure a Scheduler.
type Options struct {
	// Claims records fired slots. Required.
	Claims Claims
	// Fire runs events. Required.
	Fire FireFunc
	// Logger receives firings and failures. Nil means slog.Default().
	Logger *slog.Logger
	// Now reads the clock. Nil means time.Now; tests set it and call RunDue.
	Now func() time.Time
	// ClaimTimeout bounds one claim. Zero means 10s.
	ClaimTimeout time.Duration
}

// Key returns the claim key of a trigger: hex of a hash of the worker and expression, safe
// as a file map key and as a JetStream key.
func Key(worker, cron string) string {
	h := sha256.Sum256([]byte(worker + "\x00" + cron))
	return hex.EncodeToString(h[:16])
}

// Stats counts one worker's firings.
type Stats struct {
	// Worker names the worker.
	Worker string
	// Fired counts slots this node ran (claimed, then handed to Fire).
	Fired uint64
	// Failed counts slots whose claim or run failed.
	Failed uint64
	// Skipped counts slots another node (or an earlier run of this one) had claimed.
	Skipped uint64
}

// Scheduler fires triggers at their slots. At each slot it claims the slot (Claims) and, when
// the claim is its own, runs the event on a goroutine of its own; a slot claimed already is
// skipped. Missed slots are not replayed one by one: when the scheduler starts, or wakes up
// late, the latest slot due is fired once (if it was not claimed yet) and older missed
// slots are dropped. A trigger that never fired starts at its next slot.
type Scheduler struct {
	o Options

	mu       sync.Mutex
	triggers map[string]*trigger // by Key
	stats    map[string]*Stats   // by worker
	closed   bool

	wake    chan struct{}
	ctx     context.Context // ends with Close: the timer's claims
	cancel  context.CancelFunc
	started bool // Start was called; s.mu
	done    chan struct{}
	runs    sync.WaitGroup
}

type trigger struct {
	Trigger
	key   string
	sched *Schedule
	next  time.Time // zero until the first RunDue
}

// New returns a scheduler without triggers; Start starts its timer.
func New(o Options) *Scheduler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClaimTimeout <= 0 {
		o.ClaimTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Scheduler{
		o: o, triggers: map[string]*trigger{}, stats: map[string]*Stats{},
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// Set replaces the triggers. A trigger kept from the previous set keeps its next slot; a
// new one catches up as at start. An expression that does not parse is an error and nothing
// changes.
func (s *Scheduler) Set(ts []Trigger) error {
	next := map[string]*trigger{}
	for _, t := range ts {
		sched, err := Parse(t.Cron)
		if err != nil {
			return fmt.Errorf("worker %s: cron %q: %w", t.Worker, t.Cron, err)
		}
		k := Key(t.Worker, t.Cron)
		next[k] = &trigger{Trigger: t, key: k, sched: sched}
	}
	s.mu.Lock()
	for k, t := range next {
		if old := s.triggers[k]; old != nil {
			t.next = old.next
		}
	}
	s.triggers = next
	s.mu.Unlock()
	s.poke()
	return nil
}

// Triggers returns the worker's triggers' expressions, sorted.
func (s *Scheduler) Triggers(worker string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, t := range s.triggers {
		if t.Worker == worker {
			out = append(out, t.Cron)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start runs the timer until Close.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	go s.loop()
}

// loop fires due slots and sleeps until the next one (or a change of triggers). It wakes at
// least once a minute, so that a clock stepped forward is noticed.
func (s *Scheduler) loop() {
	defer close(s.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		next := s.RunDue(s.ctx)
		wait := time.Minute
		if !next.IsZero() {
			wait = min(max(next.Sub(s.o.Now()), 0), time.Minute)
		}
		t.Stop()
		select {
		case <-t.C:
		default:
		}
		t.Reset(wait)
	}
}

// RunDue fires every trigger whose slot is due at Options.Now: it claims the slot and, when
// the claim is its own, starts the event's run (Wait waits for the runs). It returns the
// earliest next slot, the zero Time without triggers.
func (s *Scheduler) RunDue(ctx context.Context) time.Time {
	now := s.o.Now()
	s.mu.Lock()
	var due []*trigger
	var catchUp []*trigger
	for _, t := range s.triggers {
		switch {
		case t.next.IsZero():
			catchUp = append(catchUp, t)
		case !t.next.After(now):
			due = append(due, t)
		}
	}
	s.mu.Unlock()
	type firing struct {
		t    *trigger
		slot time.Time
	}
	var fire []firing
	for _, t := range catchUp {
		// First sight: the latest slot before now fires once if a slot was fired before it
		// (this node was down at that slot); a trigger that never fired waits for its next.
		last, err := s.claimsLast(ctx, t.key)
		if err != nil {
			s.o.Logger.Warn("cron: cannot read the last fired slot; not catching up", "worker", t.Worker, "cron", t.Cron, "err", err)
		} else if p := t.sched.Prev(now); !last.IsZero() && p.After(last) {
			fire = append(fire, firing{t, p})
		}
	}
	for _, t := range due {
		// Woken late (suspended, a long GC, a clock step): the latest slot due, once.
		fire = append(fire, firing{t, t.sched.Prev(now)})
	}
	for _, f := range fire {
		if _, err := s.fireSlot(ctx, f.t.Trigger, f.t.key, f.slot); err != nil {
			s.o.Logger.Warn("cron: slot not fired", "worker", f.t.Worker, "cron", f.t.Cron, "slot", f.slot, "err", err)
		}
	}
	var earliest time.Time
	s.mu.Lock()
	for _, t := range append(catchUp, due...) {
		if s.triggers[t.key] == t {
			t.next = t.sched.Next(now)
		}
	}
	for _, t := range s.triggers {
		if !t.next.IsZero() && (earliest.IsZero() || t.next.Before(earliest)) {
			earliest = t.next
		}
	}
	s.mu.Unlock()
	return earliest
}

func (s *Scheduler) claimsLast(ctx context.Context, key string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.ClaimTimeout)
	defer cancel()
	return s.o.Claims.Last(ctx, key)
}

// ErrNoTrigger is returned by FireSlot for a worker and expression that are not configured.
var ErrNoTrigger = errors.New("no such trigger")

// ErrFutureSlot is returned by FireSlot for a slot after now: claiming it would skip every
// slot until then.
var ErrFutureSlot = errors.New("slot in the future")

// FireSlot claims the slot of the worker's trigger cron that is due at slot (the latest
// slot at or before it, not after now) and, when the claim is its own, starts its run; it
// reports whether it did. Claiming an older slot than the latest claimed one is refused as
// claimed already. A slot claimed already (here or on another node) is not run again. The admin API
// uses it to run a missed slot by hand.
func (s *Scheduler) FireSlot(ctx context.Context, worker, cron string, slot time.Time) (Event, bool, error) {
	k := Key(worker, cron)
	s.mu.Lock()
	t := s.triggers[k]
	s.mu.Unlock()
	if t == nil {
		return Event{}, false, fmt.Errorf("worker %s has no cron trigger %q: %w", worker, cron, ErrNoTrigger)
	}
	p := t.sched.Prev(slot)
	if p.IsZero() {
		return Event{}, false, fmt.Errorf("cron %q has no slot before %s", cron, slot.UTC().Format(time.RFC3339))
	}
	if p.After(s.o.Now()) {
		return Event{}, false, fmt.Errorf("cron %q: slot %s: %w (it would keep the earlier slots from running)", cron, p.Format(time.RFC3339), ErrFutureSlot)
	}
	ok, err := s.fireSlot(ctx, t.Trigger, k, p)
	return Event{Worker: worker, Cron: cron, Time: p}, ok, err
}

// fireSlot claims a slot and starts its run when the claim is this node's.
func (s *Scheduler) fireSlot(ctx context.Context, t Trigger, key string, slot time.Time) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.ClaimTimeout)
	ok, err := s.o.Claims.Claim(cctx, key, slot)
	cancel()
	s.mu.Lock()
	st := s.stats[t.Worker]
	if st == nil {
		st = &Stats{Worker: t.Worker}
		s.stats[t.Worker] = st
	}
	switch {
	case err != nil:
		st.Failed++
	case !ok:
		st.Skipped++
	default:
		st.Fired++
	}
	closed := s.closed
	if ok && !closed {
		s.runs.Add(1)
	}
	s.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("claiming slot %s: %w", slot.Format(time.RFC3339), err)
	}
	if !ok {
		s.o.Logger.Debug("cron: slot claimed already", "worker", t.Worker, "cron", t.Cron, "slot", slot)
		return false, nil
	}
	if closed {
		return false, errors.New("scheduler closed")
	}
	go s.run(Event{Worker: t.Worker, Cron: t.Cron, Time: slot})
	return true, nil
}

// run runs one event; a failure (or a panic of Fire) is logged and counted.
func (s *Scheduler) run(ev Event) {
	defer s.runs.Done()
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return s.o.Fire(context.Background(), ev)
	}()
	if err != nil {
		s.mu.Lock()
		s.stats[ev.Worker].Failed++
		s.mu.Unlock()
		s.o.Logger.Warn("cron: scheduled handler failed", "worker", ev.Worker, "cron", ev.Cron, "slot", ev.Time, "err", err)
		return
	}
	s.o.Logger.Info("cron: scheduled handler ran", "worker", ev.Worker, "cron", ev.Cron, "slot", ev.Time)
}

// Wait waits until the runs started so far have ended, or ctx ends.
func (s *Scheduler) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the counters of every worker that had a slot, sorted by worker.
func (s *Scheduler) Stats() []Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Stats, 0, len(s.stats))
	for _, st := range s.stats {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b Stats) int {
		switch {
		case a.Worker < b.Worker:
			return -1
		case a.Worker > b.Worker:
			return 1
		}
		return 0
	})
	return out
}

// Close stops the timer and waits for the runs in flight until ctx ends. No slot fires
// afterwards.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	s.cancel()
	if started {
		<-s.done
	}
	return s.Wait(ctx)
}
