// Package clustered runs Durable Objects across a cluster of Verge nodes on NATS
// JetStream: an object is served by the one node that holds its lease (a key of a
// JetStream KV bucket, created with compare-and-set, renewed by heartbeats, expiring when
// they stop). The lease's revision at acquisition is the fencing token that the replicated
// storage puts on every write. See docs/durable-cluster-design.md.
package clustered

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/durable"
)

// LeaseBucket is the JetStream KV bucket of the Durable Object leases.
const LeaseBucket = "verge_do_leases"

// Lease timing defaults (docs/durable-cluster-design.md, section 1).
const (
	// DefaultLeaseTTL is how long a lease key lives after its last write: the bucket's
	// MaxAge. A dead owner's objects are free at most this long after its last renewal.
	DefaultLeaseTTL = 3 * time.Second
	// DefaultLeaseRenew is the heartbeat: how often an owner rewrites its lease keys.
	DefaultLeaseRenew = 750 * time.Millisecond
	// DefaultLeaseMargin is how long before the key can expire an owner stops serving: it
	// covers the difference between the NATS servers' clocks and scheduling delays.
	DefaultLeaseMargin = 750 * time.Millisecond
	// minLeaseMarkerTTL is JetStream's minimum for the TTL of expiry markers.
	minLeaseMarkerTTL = time.Second
)

// ErrNotOwner is wrapped by errors of claims on objects another process owns.
var ErrNotOwner = errors.New("object owned elsewhere")

// NotOwnerError is returned by Acquire when another process holds the object's lease.
type NotOwnerError struct {
	// Owner is the node name of the holder.
	Owner string
	// Incarnation identifies the holder's process: a node restarted within the lease TTL
	// has the same name and another incarnation.
	Incarnation string
	// Revision is the lease key's revision read.
	Revision uint64
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("durable: object owned by node %s", e.Owner)
}

// Unwrap returns ErrNotOwner and durable.ErrOwnedElsewhere (so that a namespace defers,
// rather than retries, an alarm of an object another node owns).
func (e *NotOwnerError) Unwrap() []error { return []error{ErrNotOwner, durable.ErrOwnedElsewhere} }

// Addr returns the holder's address, "<node>.<incarnation>" (forwarded requests go to that
// process, not to whichever process of the node answers first), or "" when no holder is
// named.
func (e *NotOwnerError) Addr() string {
	if e.Owner == "" {
		return ""
	}
	return HolderAddr(e.Owner, e.Incarnation)
}

// HolderAddr returns the address of a process holding leases: its node name (letters,
// digits, '-' and '_') and its incarnation, joined by a dot.
func HolderAddr(node, incarnation string) string { return node + "." + incarnation }

// splitHolderAddr is HolderAddr's inverse.
func splitHolderAddr(addr string) (node, incarnation string) {
	node, incarnation, _ = strings.Cut(addr, ".")
	return node, incarnation
}

// LeaseOptions configure a Placement. Zero fields take their defaults.
type LeaseOptions struct {
	// TTL is the lifetime of a lease key after its last write. Zero means DefaultLeaseTTL.
	// A bucket that exists already keeps its TTL; the placement then uses the bucket's.
	TTL time.Duration
	// Renew is the heartbeat interval. Zero means DefaultLeaseRenew. It must be below
	// TTL - Margin.
	Renew time.Duration
	// Margin is how long before a lease can expire its holder stops serving. Zero means
	// DefaultLeaseMargin.
	Margin time.Duration
	// Logger receives lease losses. Nil means slog.Default().
	Logger *slog.Logger
}

// withDefaults applies the defaults and checks the timing.
func (o LeaseOptions) withDefaults() (LeaseOptions, error) {
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Renew <= 0 {
		o.Renew = DefaultLeaseRenew
	}
	if o.Margin <= 0 {
		o.Margin = DefaultLeaseMargin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TTL < 2*time.Second || o.Renew >= o.TTL-o.Margin {
		return o, fmt.Errorf("durable: lease ttl %v, renew %v, margin %v: want ttl >= 2s and renew < ttl - margin: %w",
			o.TTL, o.Renew, o.Margin, durable.ErrInvalid)
	}
	return o, nil
}

// LeaseStats are a placement's counters.
type LeaseStats struct {
	// Owned counts the leases held now.
	Owned int
	// Acquired, Released and Lost count lease changes since start.
	Acquired, Released, Lost uint64
}

// Placement places Durable Objects on the nodes of a cluster: Claim succeeds on the node
// that creates the object's lease key; other nodes get a *NotOwnerError naming it.
type Placement struct {
	name        string
	js          jetstream.JetStream
	replicas    int
	o           LeaseOptions
	incarnation string

	ensure chan struct{} // a lock held while opening the bucket, which a caller's ctx can abandon
	kv     atomic.Pointer[jetstream.KeyValue]
	ttl    atomic.Int64 // the bucket's TTL in use

	mu     sync.Mutex
	leases map[string]*Lease
	closed bool

	acquired, released, lost atomic.Uint64

	// onRenew, set by tests before any lease is taken, observes each renewal's outcome.
	onRenew func(l *Lease, err error)

	stop chan struct{}
	done sync.WaitGroup // renewLoop
	bg   sync.WaitGroup // deleteKey
}

var (
	_ durable.LeasePlacement = (*Placement)(nil)
	_ durable.Lease          = (*Lease)(nil)
)

// NewPlacement returns the placement of node and starts its renewal loop; Close stops it.
func NewPlacement(node *cluster.Node, o LeaseOptions) (*Placement, error) {
	return newPlacement(node.Name(), node.JetStream(), node.Replicas(), o)
}

func newPlacement(name string, js jetstream.JetStream, replicas int, o LeaseOptions) (*Placement, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	var inc [8]byte
	_, _ = rand.Read(inc[:])
	p := &Placement{
		name: name, js: js, replicas: max(replicas, 1), o: o, incarnation: hex.EncodeToString(inc[:]),
		leases: map[string]*Lease{}, stop: make(chan struct{}), ensure: make(chan struct{}, 1),
	}
	p.ttl.Store(int64(o.TTL))
	p.done.Add(1)
	go p.renewLoop()
	return p, nil
}

// leaseValue is the JSON value of a lease key.
type leaseValue struct {
	Node        string `json:"node"`
	Incarnation string `json:"incarnation"`
}

// LeaseKey returns the KV key of an object's lease: the namespace in base64url (its names
// allow "..", which keys do not) and the ID in hex.
func LeaseKey(namespace string, id durable.ID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(namespace)) + "." + id.String()
}

// bucket returns the lease bucket, creating it when it does not exist.
func (p *Placement) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if kv := p.kv.Load(); kv != nil {
		return *kv, nil
	}
	select {
	case p.ensure <- struct{}{}:
	case <-ctx.Done():
		return nil, classify("open lease bucket", ctx.Err())
	}
	defer func() { <-p.ensure }()
	if kv := p.kv.Load(); kv != nil {
		return *kv, nil
	}
	kv, err := retryJS(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, err := p.js.KeyValue(ctx, LeaseBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = p.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:         LeaseBucket,
				Description:    "Verge Durable Object leases",
				History:        1,
				TTL:            p.o.TTL,
				MaxValueSize:   1024,
				Replicas:       p.replicas,
				Storage:        jetstream.FileStorage,
				LimitMarkerTTL: max(p.o.TTL, minLeaseMarkerTTL),
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = p.js.KeyValue(ctx, LeaseBucket)
			}
		}
		return kv, err
	})
	if err != nil {
		return nil, classify("open lease bucket", err)
	}
	// A bucket created a moment ago (here or by another node at the same time) may not
	// answer yet while its stream elects a leader: tried again, bounded by ctx.
	st, err := retryJS(ctx, func(ctx context.Context) (jetstream.KeyValueStatus, error) { return kv.Status(ctx) })
	if err != nil {
		return nil, classify("read lease bucket", err)
	}
	ttl := st.TTL()
	if ttl <= p.o.Margin+p.o.Renew {
		return nil, fmt.Errorf("durable: lease bucket %s has ttl %v, not above renew %v + margin %v: %w",
			LeaseBucket, ttl, p.o.Renew, p.o.Margin, durable.ErrInvalid)
	}
	p.ttl.Store(int64(ttl))
	p.kv.Store(&kv)
	return kv, nil
}

// classify wraps err as cluster.ErrUnavailable when waiting could mend it.
func classify(op string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("durable: %s: %w (%w)", op, cluster.ErrUnavailable, err)
	}
	return fmt.Errorf("durable: %s: %w", op, err)
}

// Lease is this process's ownership of one object. It is Valid until TTL - Margin after
// the last write of its key that JetStream acknowledged; it is lost for good once its key
// was changed by anyone else or could have expired.
type Lease struct {
	p     *Placement
	ns    string
	id    durable.ID
	key   string
	value []byte
	token uint64

	mu       sync.Mutex
	rev      uint64    // the key's current revision
	sent     time.Time // when the last acknowledged write was sent (monotonic)
	renewing bool
	ended    bool // lost or released
	lost     chan struct{}
}

// Token returns the fencing token: the key's revision at acquisition. A later owner's
// token is higher.
func (l *Lease) Token() uint64 { return l.token }

// Namespace and ID name the object.
func (l *Lease) Namespace() string { return l.ns }

// ID returns the object's ID.
func (l *Lease) ID() durable.ID { return l.id }

// Valid reports whether this process may serve the object now: the lease is neither lost
// nor released, and its key cannot have expired within the margin.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.ended && time.Now().Before(l.deadline())
}

// deadline is when serving must stop; the caller holds l.mu.
func (l *Lease) deadline() time.Time {
	return l.sent.Add(time.Duration(l.p.ttl.Load()) - l.p.o.Margin)
}

// Lost is closed when the lease ends without Release: its key was taken over, or it went
// unrenewed past the TTL (and may have been taken over). The holder must drop the object.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Acquire creates the object's lease key. It fails with a *NotOwnerError when another
// process (or an earlier incarnation of this node) holds it, and with an error wrapping
// cluster.ErrUnavailable when JetStream cannot be reached.
func (p *Placement) Acquire(ctx context.Context, namespace string, id durable.ID) (*Lease, error) {
	key := LeaseKey(namespace, id)
	p.mu.Lock()
	closed, held := p.closed, p.leases[key] != nil
	p.mu.Unlock()
	if closed {
		return nil, durable.ErrClosed
	}
	if held {
		return nil, fmt.Errorf("durable: lease of %s held by this process already: %w", id, durable.ErrInvalid)
	}
	kv, err := p.bucket(ctx)
	if err != nil {
		return nil, err
	}
	value, _ := json.Marshal(leaseValue{Node: p.name, Incarnation: p.incarnation})
	// A key that changes hands between the Create and the Get is tried again; three times
	// is enough for a key that keeps changing hands to show an owner. Failures that
	// waiting mends (a stream electing its leader) are tried again until ctx ends.
	for changed := 0; changed < 3; {
		l, err := p.tryAcquire(ctx, kv, namespace, id, key, value)
		switch {
		case err == nil:
			return l, nil
		case errors.Is(err, errKeyChanged):
			changed++
			continue
		case !errors.Is(err, cluster.ErrUnavailable) || ctx.Err() != nil:
			return nil, err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
	return nil, fmt.Errorf("durable: lease of %s keeps changing hands: %w", id, cluster.ErrUnavailable)
}

// leaseOpTimeout bounds one JetStream call of Acquire: a stream without a leader does
// not answer at all, and the caller's deadline may be far.
const leaseOpTimeout = 2 * time.Second

var errKeyChanged = errors.New("lease key changed during acquire")

// isWrongLastSeq reports whether err is JetStream's compare-and-set conflict.
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// tryAcquire is one attempt of Acquire.
func (p *Placement) tryAcquire(ctx context.Context, kv jetstream.KeyValue, namespace string, id durable.ID, key string, value []byte) (*Lease, error) {
	octx, cancel := context.WithTimeout(ctx, leaseOpTimeout)
	defer cancel()
	sent := time.Now()
	rev, err := kv.Create(octx, key, value)
	if err == nil {
		return p.hold(kv, &Lease{p: p, ns: namespace, id: id, key: key, value: value, token: rev, rev: rev, sent: sent, lost: make(chan struct{})})
	}
	if !isWrongLastSeq(err) {
		return nil, classify("acquire lease", err)
	}
	e, err := kv.Get(octx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, errKeyChanged
	}
	if err != nil {
		return nil, classify("read lease", err)
	}
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.Node == "" {
		return nil, fmt.Errorf("durable: lease of %s: unreadable value %q", id, e.Value())
	}
	if v.Incarnation != p.incarnation {
		return nil, &NotOwnerError{Owner: v.Node, Incarnation: v.Incarnation, Revision: e.Revision()}
	}
	// This process's own key, from a Create whose acknowledgement was lost: a
	// compare-and-set on it proves nobody wrote since, and starts the lease afresh.
	sent = time.Now()
	rev, err = kv.Update(octx, key, value, e.Revision())
	if err == nil {
		return p.hold(kv, &Lease{p: p, ns: namespace, id: id, key: key, value: value, token: e.Revision(), rev: rev, sent: sent, lost: make(chan struct{})})
	}
	if isWrongLastSeq(err) {
		return nil, errKeyChanged
	}
	return nil, classify("acquire lease", err)
}

// holder returns the node named in a lease entry and the holder's address.
func holder(e jetstream.KeyValueEntry) (node, addr string) {
	var v leaseValue
	_ = json.Unmarshal(e.Value(), &v)
	return v.Node, HolderAddr(v.Node, v.Incarnation)
}

// Addr returns this process's holder address (HolderAddr of its node and incarnation).
func (p *Placement) Addr() string { return HolderAddr(p.name, p.incarnation) }

// hold registers a lease just acquired, for renewal.
func (p *Placement) hold(kv jetstream.KeyValue, l *Lease) (*Lease, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.release(kv)
		return nil, durable.ErrClosed
	}
	p.leases[l.key] = l
	p.mu.Unlock()
	p.acquired.Add(1)
	return l, nil
}

// Claim acquires the object's lease (durable.Placement); release gives it back.
func (p *Placement) Claim(ctx context.Context, namespace string, id durable.ID) (func(), error) {
	l, err := p.Acquire(ctx, namespace, id)
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}

// held returns this process's lease on the object, nil when it holds none.
func (p *Placement) held(namespace string, id durable.ID) *Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leases[LeaseKey(namespace, id)]
}

// ClaimLease acquires the object's lease (durable.LeasePlacement).
func (p *Placement) ClaimLease(ctx context.Context, namespace string, id durable.ID) (durable.Lease, error) {
	l, err := p.Acquire(ctx, namespace, id)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Owner returns the node holding the object's lease, or "" when none does.
func (p *Placement) Owner(ctx context.Context, namespace string, id durable.ID) (string, error) {
	node, _, err := p.owner(ctx, namespace, id)
	return node, err
}

// OwnerAddr returns the address (HolderAddr) of the process holding the object's lease, or
// "" when none does.
func (p *Placement) OwnerAddr(ctx context.Context, namespace string, id durable.ID) (string, error) {
	node, addr, err := p.owner(ctx, namespace, id)
	if node == "" {
		return "", err
	}
	return addr, err
}

func (p *Placement) owner(ctx context.Context, namespace string, id durable.ID) (node, addr string, err error) {
	kv, err := p.bucket(ctx)
	if err != nil {
		return "", "", err
	}
	e, err := kv.Get(ctx, LeaseKey(namespace, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", "", nil
	}
	if err != nil {
		return "", "", classify("read lease", err)
	}
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return "", "", fmt.Errorf("durable: lease of %s: unreadable value %q", id, e.Value())
	}
	return v.Node, HolderAddr(v.Node, v.Incarnation), nil
}

// WaitReleased waits until owner (a node name: any of its processes; or a holder address:
// that process) no longer holds the object's lease (it was released, it expired, or
// another process took it over), or ctx ends. An empty owner means anyone:
// it waits until nobody holds the lease. An Acquire after it may still lose the race to
// another node.
//
// It reads the key, and while the key is held reads it again every 250 ms (sooner when
// the holder's last write expires before): a few reads per wait and no consumer, so that
// many waiters during a failover do not add to the JetStream API's load while it elects
// leaders.
func (p *Placement) WaitReleased(ctx context.Context, namespace string, id durable.ID, owner string) error {
	kv, err := p.bucket(ctx)
	if err != nil {
		return err
	}
	key := LeaseKey(namespace, id)
	ttl := time.Duration(p.ttl.Load())
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		rctx, cancel := context.WithTimeout(ctx, ttl)
		e, err := kv.Get(rctx, key)
		cancel()
		wait := ttl / 4
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			return nil
		case err == nil && owner != "" && !holds(e, owner):
			return nil
		case err == nil:
			// Until the holder's write expires, looking every 250 ms for a release.
			wait = min(max(time.Until(e.Created().Add(ttl)), 50*time.Millisecond), 250*time.Millisecond)
		case ctx.Err() != nil:
			return classify("wait for lease", ctx.Err())
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return classify("wait for lease", ctx.Err())
		case <-t.C:
		}
	}
}

// holds reports whether the lease entry is held by owner: a node name (any of its
// processes) or a holder address.
func holds(e jetstream.KeyValueEntry, owner string) bool {
	node, addr := holder(e)
	return node == owner || addr == owner
}

// Release gives the lease back; the caller has stopped serving the object. Releasing a
// lost lease does nothing.
func (l *Lease) Release() {
	kv := l.p.kv.Load()
	if kv == nil {
		return
	}
	l.release(*kv)
}

func (l *Lease) release(kv jetstream.KeyValue) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	rev := l.rev
	l.mu.Unlock()
	l.p.forget(l)
	l.p.released.Add(1)
	// The key is deleted in the background: Release runs under the namespace's lock.
	l.p.bg.Add(1)
	go l.p.deleteKey(kv, l, rev)
}

// deleteKey deletes a released lease's key if it is still at rev. A mismatch means it
// expired and was taken, or this process took it again: nothing to give back. Any other
// failure leaves the key to expire.
func (p *Placement) deleteKey(kv jetstream.KeyValue, l *Lease, rev uint64) {
	defer p.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), p.o.Renew)
	defer cancel()
	if err := kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		p.o.Logger.Debug("durable: releasing lease; it expires instead", "object", l.id.String(), "err", err)
	}
}

// lose ends the lease without releasing it.
func (l *Lease) lose(why string, err error) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	l.mu.Unlock()
	l.p.forget(l)
	l.p.lost.Add(1)
	close(l.lost)
	l.p.o.Logger.Warn("durable: lease lost; the object stops being served here", "namespace", l.ns, "object", l.id.String(), "why", why, "err", err)
}

func (p *Placement) forget(l *Lease) {
	p.mu.Lock()
	if p.leases[l.key] == l {
		delete(p.leases, l.key)
	}
	p.mu.Unlock()
}

// maxParallelRenewals bounds the renewals in flight at once.
const maxParallelRenewals = 16

// renewLoop rewrites every held lease key each Renew interval.
func (p *Placement) renewLoop() {
	defer p.done.Done()
	t := time.NewTicker(p.o.Renew)
	defer t.Stop()
	sem := make(chan struct{}, maxParallelRenewals)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		ls := make([]*Lease, 0, len(p.leases))
		for _, l := range p.leases {
			ls = append(ls, l)
		}
		p.mu.Unlock()
		for _, l := range ls {
			if !l.startRenewal() {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-p.stop:
				l.endRenewal()
				return
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-sem }()
				p.renew(l)
			}()
		}
	}
}

// startRenewal marks l as being renewed; false when it ended or a renewal is in flight.
// A lease unrenewed for a whole TTL is lost here: its key may have expired and been taken.
func (l *Lease) startRenewal() bool {
	l.mu.Lock()
	if l.ended || l.renewing {
		l.mu.Unlock()
		return false
	}
	if time.Since(l.sent) >= time.Duration(l.p.ttl.Load()) {
		l.mu.Unlock()
		l.lose("not renewed within the lease ttl", nil)
		return false
	}
	l.renewing = true
	l.mu.Unlock()
	return true
}

func (l *Lease) endRenewal() {
	l.mu.Lock()
	l.renewing = false
	l.mu.Unlock()
}

// renew rewrites l's key at its revision. Success extends the lease; a revision mismatch
// (or a vanished key) loses it; other failures leave it to run out.
func (p *Placement) renew(l *Lease) {
	defer l.endRenewal()
	kv := p.kv.Load()
	if kv == nil {
		return
	}
	l.mu.Lock()
	rev := l.rev
	// Waiting longer than the serving window is pointless: an acknowledgement sent later
	// would not make the lease valid.
	wait := time.Duration(p.ttl.Load()) - p.o.Margin
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	sent := time.Now()
	nrev, err := (*kv).Update(ctx, l.key, l.value, rev)
	switch {
	case err == nil:
		l.mu.Lock()
		if !l.ended {
			l.rev, l.sent = nrev, sent
		}
		l.mu.Unlock()
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound),
		errors.Is(err, jetstream.ErrKeyDeleted), errors.Is(err, jetstream.ErrKeyExists):
		if !l.adopt(ctx, *kv, rev) {
			l.lose("lease key changed by another process", err)
		}
	default:
		p.o.Logger.Debug("durable: lease renewal failed; retrying", "object", l.id.String(), "err", err)
	}
	if f := p.onRenew; f != nil {
		f(l, err)
	}
}

// adopt handles a renewal's revision mismatch caused by this process itself: an earlier
// renewal that timed out was stored after all. The key then holds this incarnation's value
// at a higher revision, and since every write of that value is a compare-and-set on the
// previous one, nobody else wrote in between. The revision is taken over; the deadline is
// not moved (when that write was stored is unknown), the next renewal moves it.
func (l *Lease) adopt(ctx context.Context, kv jetstream.KeyValue, rev uint64) bool {
	e, err := kv.Get(ctx, l.key)
	if err != nil || e.Revision() <= rev || string(e.Value()) != string(l.value) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended || l.rev != rev {
		return false
	}
	l.rev = e.Revision()
	return true
}

// Stats returns the placement's counters.
func (p *Placement) Stats() LeaseStats {
	p.mu.Lock()
	owned := len(p.leases)
	p.mu.Unlock()
	return LeaseStats{Owned: owned, Acquired: p.acquired.Load(), Released: p.released.Load(), Lost: p.lost.Load()}
}

// Close stops renewing and releases every lease still held (their objects must have been
// closed first: a namespace is closed before its placement).
func (p *Placement) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	ls := make([]*Lease, 0, len(p.leases))
	for _, l := range p.leases {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	close(p.stop)
	p.done.Wait()
	for _, l := range ls {
		l.Release()
	}
	p.bg.Wait()
}
