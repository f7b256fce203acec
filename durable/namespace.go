// Package durable implements Durable Objects: namespaces of objects, each with one live
// instance in this process at a time, an input gate (requests to one object run one at a
// time), an output gate (a request's result is released only after its storage writes are
// durable), transactional key-value and SQL storage, and alarms that fire at least once.
//
// Storage and placement are interfaces (Store, Placement): SQLiteStore and Local are the
// embedded, single-process implementations; a replicated backend plugs in the same way.
// The code that runs an object (a WebAssembly instance, in Verge) is attached by the caller
// through Object.Actor and the Options hooks.
package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultIdleTimeout = 30 * time.Second
	DefaultMaxBatch    = 128
	// DefaultMaxLive is Options.MaxLive's default. A live object costs its storage's open
	// database (three file descriptors) and what its code keeps in memory; Verge's workers
	// host many objects per instance (worker.Limits.ObjectsPerInstance).
	DefaultMaxLive = 1024
	// MaxAlarmRetries is how many times a failed alarm is retried before it is dropped.
	MaxAlarmRetries = 6
	// AlarmBackoff is the first retry delay; it doubles with each retry.
	AlarmBackoff = 2 * time.Second
	// AlarmOwnedElsewhereDelay is how long a process whose claim of a due alarm's object
	// failed with ErrOwnedElsewhere leaves the alarm to the owner before trying again (on
	// an AlarmDeferrer store): about a lease's renewal interval, so that a dead owner's
	// alarms are taken over soon after its lease expires.
	AlarmOwnedElsewhereDelay = time.Second
)

// Options configure a Namespace.
type Options struct {
	// Name identifies the namespace in storage (a directory name) and in IDs. Required.
	Name string
	// Store keeps the objects' storage. Required.
	Store Store
	// Placement claims objects for this process. Nil means Local.
	Placement Placement
	// IdleTimeout is how long an object without requests stays live before it is evicted
	// (OnEvict is called and its storage closed). Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxLive caps the objects with a live instance: activating one more evicts the least
	// recently used idle object. When every live object is busy the cap is exceeded rather
	// than a request refused. Zero means DefaultMaxLive.
	MaxLive int
	// MaxBatch caps how many consecutive requests to one object share a commit (group
	// commit). Zero means DefaultMaxBatch; 1 commits after every request.
	MaxBatch int
	// OnAlarm runs an object's alarm inside the object's input gate; an error makes it be
	// retried with backoff. Nil means alarms are stored but never fired.
	OnAlarm func(ctx context.Context, t *Turn, retries int) error
	// OnEvict is called when an object's live instance is dropped (idle, or Close), outside
	// any request, to release its Actor. Nil means nothing to release.
	OnEvict func(o *Object)
	// Logger receives alarm failures. Nil means slog.Default().
	Logger *slog.Logger
}

// Namespace is a set of objects of one class.
type Namespace struct {
	opts   Options
	alarms AlarmStore
	shared AlarmDeferrer // alarms, when it is an index shared with other processes
	unwake func()        // ends the AlarmNotifier registration; nil without one

	mu      sync.Mutex
	objects map[ID]*Object
	closed  bool

	wake chan struct{}
	stop chan struct{}
	done sync.WaitGroup
}

// Object is the live instance of one object.
type Object struct {
	// ID is the object's ID.
	ID ID
	// Actor is the caller's state for the live instance (e.g. the WebAssembly instance that
	// runs it). It is read and written only inside the input gate (Do).
	Actor any

	ns      *Namespace
	store   ObjectStore
	release func()
	lease   Lease // nil unless the placement is a LeasePlacement
	// activating is closed when the claim and open of a new object end (nil after);
	// activateErr is their failure, read after activating is closed.
	activating  chan struct{} // under ns.mu
	activateErr error
	gate        chan struct{}
	waiting     atomic.Int32
	refs        int // under ns.mu
	lastUsed    time.Time
	batch       *batch // under the gate
}

type batch struct {
	txn     Txn
	members int
	done    chan struct{}
	err     error
}

// New returns a namespace and starts its alarm scheduler and eviction.
func New(ctx context.Context, o Options) (*Namespace, error) {
	if o.Store == nil || o.Name == "" {
		return nil, errors.New("durable: Options.Name and Options.Store are required")
	}
	if o.Placement == nil {
		o.Placement = Local{}
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxLive <= 0 {
		o.MaxLive = DefaultMaxLive
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	alarms, err := o.Store.Alarms(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	ns := &Namespace{opts: o, alarms: alarms, objects: map[ID]*Object{}, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	ns.shared, _ = alarms.(AlarmDeferrer)
	if n, ok := alarms.(AlarmNotifier); ok {
		ns.unwake = n.Notify(ns.poke)
	}
	ns.done.Add(2)
	go ns.alarmLoop()
	go ns.evictLoop()
	return ns, nil
}

// Name returns the namespace's name.
func (ns *Namespace) Name() string { return ns.opts.Name }

// IDFromName returns the ID of name in this namespace.
func (ns *Namespace) IDFromName(name string) ID { return IDFromName(ns.opts.Name, name) }

// NewUniqueID returns a random ID of this namespace.
func (ns *Namespace) NewUniqueID() ID { return NewUniqueID(ns.opts.Name) }

// ParseID parses an ID of this namespace.
func (ns *Namespace) ParseID(s string) (ID, error) { return ParseID(ns.opts.Name, s) }

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("durable: namespace closed")

// acquire returns the live object for id, activating it when needed, with a reference held.
// Activation (the placement's claim, a network round trip on a cluster, and opening the
// storage) runs outside ns.mu, so that it delays no other object: a placeholder holds the
// ID meanwhile, and concurrent requests for it wait for its outcome.
func (ns *Namespace) acquire(ctx context.Context, id ID) (*Object, error) {
	ns.mu.Lock()
	for {
		if ns.closed {
			ns.mu.Unlock()
			return nil, ErrClosed
		}
		o := ns.objects[id]
		if o == nil {
			break
		}
		if ch := o.activating; ch != nil {
			ns.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, fmt.Errorf("durable: waiting for object %s to activate: %w", id, ctx.Err())
			}
			if o.activateErr != nil {
				return nil, o.activateErr
			}
			ns.mu.Lock()
			continue
		}
		if o.refs > 0 || !o.lost() {
			o.refs++
			ns.mu.Unlock()
			return o, nil
		}
		// The lease is gone: drop this instance and claim the object again.
		delete(ns.objects, id)
		ns.evict(o)
		break
	}
	if len(ns.objects) >= ns.opts.MaxLive {
		var lru *Object
		for _, o := range ns.objects {
			if o.refs == 0 && (lru == nil || o.lastUsed.Before(lru.lastUsed)) {
				lru = o
			}
		}
		if lru != nil {
			delete(ns.objects, lru.ID)
			ns.evict(lru)
		}
	}
	o := &Object{ID: id, ns: ns, gate: make(chan struct{}, 1), refs: 1, activating: make(chan struct{})}
	ns.objects[id] = o
	ns.mu.Unlock()

	err := o.activate(ctx)

	ns.mu.Lock()
	defer ns.mu.Unlock()
	ch := o.activating
	o.activating = nil
	if err != nil {
		o.activateErr = err
		delete(ns.objects, id)
	}
	close(ch)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// activate claims the object and opens its storage.
func (o *Object) activate(ctx context.Context) error {
	ns := o.ns
	var err error
	if lp, ok := ns.opts.Placement.(LeasePlacement); ok {
		if o.lease, err = lp.ClaimLease(ctx, ns.opts.Name, o.ID); err == nil {
			o.release = o.lease.Release
		}
	} else {
		o.release, err = ns.opts.Placement.Claim(ctx, ns.opts.Name, o.ID)
	}
	if err != nil {
		return fmt.Errorf("durable: claim %s: %w", o.ID, err)
	}
	if o.store, err = ns.opts.Store.Open(ctx, ns.opts.Name, o.ID); err != nil {
		o.release()
		return err
	}
	return nil
}

// lost reports whether the object's lease was lost.
func (o *Object) lost() bool {
	if o.lease == nil {
		return false
	}
	select {
	case <-o.lease.Lost():
		return true
	default:
		return false
	}
}

// leaseValid reports whether the object may be served here now.
func (o *Object) leaseValid() bool { return o.lease == nil || o.lease.Valid() }

func (ns *Namespace) unref(o *Object) {
	ns.mu.Lock()
	o.refs--
	o.lastUsed = time.Now()
	ns.mu.Unlock()
}

// Turn is one request's (or alarm's) exclusive access to an object, inside its input gate.
// While it waits for something other than storage it may open the gate (Suspend, in
// gate.go) and take it back (Reenter).
type Turn struct {
	// Object is the live object.
	Object *Object
	txn    Txn // nil while suspended or after a failed re-entry
	depth  int
	// b is the batch the turn writes into now; batches are the ones it wrote into, whose
	// commits its result waits for (more than one when it was suspended).
	b         *batch
	batches   []*batch
	suspended bool
	// dirty is set by every write since the turn entered its current batch (Sync).
	dirty bool
}

// Do runs fn for object id inside its input gate: calls for one object run one at a time, in
// arrival order. fn's storage writes join the object's current write batch inside a
// savepoint (rolled back when fn fails); Do returns only after the batch is committed
// (durable), so a caller that releases its response after Do honours the output gate. While
// requests queue at the gate, up to Options.MaxBatch of them share one commit.
func (ns *Namespace) Do(ctx context.Context, id ID, fn func(t *Turn) error) error {
	o, err := ns.acquire(ctx, id)
	if err != nil {
		return err
	}
	defer ns.unref(o)
	o.waiting.Add(1)
	// The gate is held only by turns, each bounded by its invocation's limits, so this wait
	// is bounded too; a canceled caller still takes its turn to keep the batch protocol
	// (the last turn commits) intact.
	o.gate <- struct{}{}
	o.waiting.Add(-1)
	var t *Turn
	if err = ctx.Err(); err == nil {
		if !o.leaseValid() {
			err = fmt.Errorf("durable: object %s: %w", id, ErrLeaseLost)
		} else {
			t, err = o.turn(ctx, fn)
		}
	}
	if ob := o.batch; ob != nil && (o.waiting.Load() == 0 || ob.members >= ns.opts.MaxBatch || aborted(ob.txn) || !o.leaseValid()) {
		o.batch = nil
		if o.leaseValid() {
			ob.err = ob.txn.Commit()
		} else {
			// Another process may serve the object by now: its writes must not land.
			ob.err = errors.Join(ErrLeaseLost, ob.txn.Rollback())
		}
		close(ob.done)
	}
	<-o.gate
	if t != nil {
		// The output gate: every batch the turn wrote into is committed (in order: a
		// batch begins only after the one before it ended).
		for _, b := range t.batches {
			<-b.done
			if err == nil && b.err != nil {
				err = fmt.Errorf("durable: writes of object %s not committed: %w", id, b.err)
			}
		}
	}
	return err
}

// aborted reports whether the storage rolled txn back under the batch (Txn implementations
// that can tell implement Aborted): the batch then ends at once, failing its members,
// rather than taking in more requests.
func aborted(txn Txn) bool {
	a, ok := txn.(interface{ Aborted() bool })
	return ok && a.Aborted()
}

// turn runs fn in a savepoint of the current batch.
func (o *Object) turn(ctx context.Context, fn func(t *Turn) error) (*Turn, error) {
	t := &Turn{Object: o}
	if err := t.enter(ctx); err != nil {
		return t, err
	}
	err := fn(t)
	if t.suspended {
		// fn returned without taking the gate back (Reenter): it must not be left to the
		// caller's Do in that state, which releases the gate it holds.
		panic("durable: a turn ended while suspended")
	}
	if t.txn == nil {
		// The re-entry after a suspension failed: there is no savepoint to end.
		if err == nil {
			err = errNoBatch
		}
		return t, err
	}
	for t.depth > 0 {
		_ = t.Rollback()
	}
	if err != nil {
		if rerr := t.txn.RollbackTo("verge_turn"); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return t, err
	}
	if err := t.txn.Release("verge_turn"); err != nil {
		return t, fmt.Errorf("durable: release savepoint: %w", err)
	}
	return t, nil
}

// enter joins the object's current batch (beginning one when there is none) in a new
// savepoint; the caller holds the gate.
func (t *Turn) enter(ctx context.Context) error {
	o := t.Object
	if o.batch == nil {
		txn, err := o.store.Begin(ctx)
		if err != nil {
			return err
		}
		o.batch = &batch{txn: txn, done: make(chan struct{})}
	}
	b := o.batch
	b.members++
	if n := len(t.batches); n == 0 || t.batches[n-1] != b {
		t.batches = append(t.batches, b)
	}
	if err := b.txn.Savepoint("verge_turn"); err != nil {
		return fmt.Errorf("durable: savepoint: %w", err)
	}
	t.b, t.txn, t.dirty = b, b.txn, false
	return nil
}

// Close stops the alarm scheduler and evicts every object, waiting for turns in progress
// (or until ctx ends).
func (ns *Namespace) Close(ctx context.Context) error {
	ns.mu.Lock()
	if ns.closed {
		ns.mu.Unlock()
		return nil
	}
	ns.closed = true
	close(ns.stop)
	ns.mu.Unlock()
	ns.done.Wait()
	if ns.unwake != nil {
		ns.unwake()
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		ns.mu.Lock()
		busy := 0
		for id, o := range ns.objects {
			if o.refs > 0 {
				busy++
				continue
			}
			delete(ns.objects, id)
			ns.evict(o)
		}
		ns.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("durable: %d objects still busy: %w", busy, ctx.Err())
		case <-t.C:
		}
	}
}

// evict drops o's live instance; the caller holds ns.mu and has removed o from the map.
func (ns *Namespace) evict(o *Object) {
	if ns.opts.OnEvict != nil {
		ns.opts.OnEvict(o)
	}
	o.store.Close()
	o.release()
}

// evictLoop drops objects idle for longer than IdleTimeout.
func (ns *Namespace) evictLoop() {
	defer ns.done.Done()
	t := time.NewTicker(max(ns.opts.IdleTimeout/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ns.stop:
			return
		case now := <-t.C:
			ns.mu.Lock()
			for id, o := range ns.objects {
				if o.refs == 0 && now.Sub(o.lastUsed) >= ns.opts.IdleTimeout {
					delete(ns.objects, id)
					ns.evict(o)
				}
			}
			ns.mu.Unlock()
		}
	}
}

// Live reports how many objects have a live instance.
func (ns *Namespace) Live() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return len(ns.objects)
}
