package clustered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/durable"
)

// Forwarding limits and defaults.
const (
	// DefaultForwardTimeout bounds a forwarded request whose context has no deadline.
	DefaultForwardTimeout = 30 * time.Second
	// DefaultMaxForwardInFlight bounds the forwarded requests a node runs at once; more are
	// answered "unavailable" at once.
	DefaultMaxForwardInFlight = 256
	// forwardHeaderRoom is what a request or response must leave of the connection's
	// max_payload for the message's headers.
	forwardHeaderRoom = 4 << 10
	// maxRouteAttempts bounds the owners one call tries (an owner that moved, one that died).
	maxRouteAttempts = 4
)

// Headers of forwarded requests and their replies.
const (
	hdrNamespace = "Verge-Do-Ns"
	hdrID        = "Verge-Do-Id"
	hdrDeadline  = "Verge-Do-Deadline"
	hdrError     = "Verge-Do-Error"
	hdrOwner     = "Verge-Do-Owner"
)

// Error classes of a reply's Verge-Do-Error header.
const (
	errClassNotOwner    = "not-owner"
	errClassInvalid     = "invalid"
	errClassUnavailable = "unavailable"
	errClassInternal    = "internal"
)

// ErrRemote is wrapped by errors a forwarded request failed with on its owner.
var ErrRemote = errors.New("durable object request failed on its owner")

// ForwardSubject returns the subject on which the process at addr (HolderAddr: node name
// and incarnation) receives forwarded object requests. Each process has its own subject,
// so that during an upgrade, when a node's old and new processes both run, a request
// reaches the process that holds the object's lease.
func ForwardSubject(addr string) string { return cluster.SubjectPrefix + "do." + addr }

// Handler runs one object request on this node (through the namespace's input and output
// gates) and returns its encoded response. It returns an error wrapping a *NotOwnerError
// when another node owns the object.
// (An alias, so that packages that use a Forwarder through an interface need not import
// this one.)
type Handler = func(ctx context.Context, id durable.ID, payload []byte) ([]byte, error)

// ForwardOptions configure a Forwarder. Zero fields take their defaults.
type ForwardOptions struct {
	// MaxInFlight bounds the forwarded requests run at once. Zero means
	// DefaultMaxForwardInFlight.
	MaxInFlight int
	// Logger receives failures to reply. Nil means slog.Default().
	Logger *slog.Logger
}

// ForwardStats are a forwarder's counters.
type ForwardStats struct {
	// Out counts requests sent to other nodes, In those received and run here, Refused
	// those answered "unavailable" because MaxInFlight were running.
	Out, In, Refused uint64
}

// Forwarder carries object requests between nodes over NATS request/reply: each node
// subscribes to ForwardSubject(its holder address) and runs what arrives through the Handler of the
// request's namespace; Call runs a request here or on the object's owner.
type Forwarder struct {
	nc   *nats.Conn
	name string // node name
	addr string // holder address (node and incarnation)
	p    *Placement
	o    ForwardOptions
	sub  *nats.Subscription
	sem  chan struct{}

	mu       sync.Mutex
	handlers map[string]Handler
	owners   map[string]string // LeaseKey -> the node that answered for it last
	closed   bool

	out, in, refused atomic.Uint64

	// onRoute, set by tests before the first Call, observes each failed attempt of Call.
	onRoute func(owner string, err error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewForwarder subscribes node to its forwarding subject. p finds the owners of objects.
func NewForwarder(node *cluster.Node, p *Placement, o ForwardOptions) (*Forwarder, error) {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxForwardInFlight
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	f := &Forwarder{
		nc: node.Conn(), name: node.Name(), addr: p.Addr(), p: p, o: o, sem: make(chan struct{}, o.MaxInFlight),
		handlers: map[string]Handler{}, owners: map[string]string{},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	sub, err := f.nc.Subscribe(ForwardSubject(f.addr), f.receive)
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("durable: subscribe to forwarded requests: %w", err)
	}
	f.sub = sub
	return f, nil
}

// Handle sets the handler of namespace's requests; nil removes it.
func (f *Forwarder) Handle(namespace string, h Handler) {
	f.mu.Lock()
	if h == nil {
		delete(f.handlers, namespace)
	} else {
		f.handlers[namespace] = h
	}
	f.mu.Unlock()
}

// Call runs a request for object id of namespace: here, through the namespace's Handler,
// when this node owns the object or can acquire it; otherwise on its owner, whose answer
// is returned. An owner that is gone (no responders: the request was not delivered) is
// waited out: its lease expires and the object is acquired again, here or elsewhere. An
// owner lost while it had the request fails the call (outcome unknown: the request is not
// repeated). ctx bounds the whole call.
func (f *Forwarder) Call(ctx context.Context, namespace string, id durable.ID, payload []byte) ([]byte, error) {
	f.mu.Lock()
	h := f.handlers[namespace]
	f.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("durable: no handler for namespace %s: %w", namespace, durable.ErrInvalid)
	}
	key := LeaseKey(namespace, id)
	var last error
	for range maxRouteAttempts {
		owner := f.owner(key)
		if owner == "" || owner == f.addr {
			resp, err := h(ctx, id, payload)
			if errors.Is(err, durable.ErrLeaseLost) {
				// The lease lapsed under the request: claim again, or find the new owner.
				last = err
				continue
			}
			var no *NotOwnerError
			if !errors.As(err, &no) {
				return resp, err
			}
			// Another process holds it: another node, or this node's previous
			// process (a restart within the lease TTL, which answers nothing and is
			// waited out below, or an upgrade's old process, which serves it).
			owner = no.Addr()
			f.setOwner(key, owner)
		}
		resp, err := f.Forward(ctx, owner, namespace, id, payload)
		var no *NotOwnerError
		switch {
		case err == nil:
			return resp, nil
		case errors.As(err, &no):
			// The object moved, or its owner lost the lease under the request (no owner
			// named): ask again.
			f.setOwner(key, no.Addr())
		case errors.Is(err, errNoOwner):
			// The owner is gone: wait for its lease to expire, then try to acquire.
			f.setOwner(key, "")
			if werr := f.p.WaitReleased(ctx, namespace, id, owner); werr != nil {
				return nil, errors.Join(err, werr)
			}
		default:
			return nil, err
		}
		last = err
		if f.onRoute != nil {
			f.onRoute(owner, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("durable: object %s not served after %d attempts: %w (%w)", id, maxRouteAttempts, cluster.ErrUnavailable, last)
}

func (f *Forwarder) owner(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.owners[key]
}

// maxOwnerHints bounds the remembered owners; the map is emptied when it is full.
const maxOwnerHints = 64 << 10

func (f *Forwarder) setOwner(key, owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if owner == "" {
		delete(f.owners, key)
		return
	}
	if len(f.owners) >= maxOwnerHints {
		clear(f.owners)
	}
	f.owners[key] = owner
}

// errNoOwner: the node named as owner does not listen (it died or left).
var errNoOwner = errors.New("owner does not answer")

// Forward sends a request to node owner and returns its answer. The request waits as
// long as ctx allows (DefaultForwardTimeout without a deadline); the owner runs it under
// the same deadline.
func (f *Forwarder) Forward(ctx context.Context, owner, namespace string, id durable.ID, payload []byte) ([]byte, error) {
	if limit := f.nc.MaxPayload() - forwardHeaderRoom; int64(len(payload)) > limit {
		return nil, fmt.Errorf("durable: request of %d bytes exceeds the %d bytes a forwarded request may carry: %w", len(payload), limit, durable.ErrInvalid)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultForwardTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	m := nats.NewMsg(ForwardSubject(owner))
	m.Header.Set(hdrNamespace, namespace)
	m.Header.Set(hdrID, id.String())
	m.Header.Set(hdrDeadline, strconv.FormatInt(dl.UnixNano(), 10))
	m.Data = payload
	f.out.Add(1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var gone atomic.Bool
	// The watchdog ends with rctx, when Forward returns.
	go f.watchOwner(rctx, cancel, &gone, owner, namespace, id)
	r, err := f.nc.RequestMsgWithContext(rctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// Not delivered: safe to try elsewhere.
		return nil, fmt.Errorf("durable: forward to node %s: %w (%w)", owner, errNoOwner, cluster.ErrUnavailable)
	case err != nil && gone.Load():
		// Delivered, perhaps run and committed: the outcome is unknown, and a request is
		// not repeated behind its caller's back.
		return nil, fmt.Errorf("durable: node %s lost the object while running the request; its outcome is unknown: %w", owner, cluster.ErrUnavailable)
	case err != nil:
		return nil, fmt.Errorf("durable: forward to node %s: %w (%w)", owner, cluster.ErrUnavailable, err)
	}
	switch r.Header.Get(hdrError) {
	case "":
		return r.Data, nil
	case errClassNotOwner:
		node, inc := splitHolderAddr(r.Header.Get(hdrOwner))
		return nil, &NotOwnerError{Owner: node, Incarnation: inc}
	case errClassInvalid:
		return nil, fmt.Errorf("durable: on node %s: %s: %w", owner, r.Data, durable.ErrInvalid)
	case errClassUnavailable:
		return nil, fmt.Errorf("durable: on node %s: %s: %w", owner, r.Data, cluster.ErrUnavailable)
	default:
		return nil, fmt.Errorf("durable: on node %s: %s: %w", owner, r.Data, ErrRemote)
	}
}

// watchOwner cancels a forwarded request when owner no longer holds the object's lease:
// a dead or partitioned owner does not always show as "no responders" (the servers may
// keep its interest until their routes time out), but its lease expires within the TTL.
// The request then fails (outcome unknown) rather than waiting for the caller's deadline.
func (f *Forwarder) watchOwner(ctx context.Context, cancel context.CancelFunc, gone *atomic.Bool, owner, namespace string, id durable.ID) {
	t := time.NewTicker(f.p.o.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := f.p.OwnerAddr(ctx, namespace, id)
		if err == nil && cur != owner {
			gone.Store(true)
			cancel()
			return
		}
	}
}

// receive takes a forwarded request off the subscription and runs it on its own goroutine.
func (f *Forwarder) receive(m *nats.Msg) {
	select {
	case f.sem <- struct{}{}:
	default:
		f.refused.Add(1)
		f.reply(m, nil, fmt.Errorf("node %s runs %d forwarded requests already: %w", f.name, f.o.MaxInFlight, cluster.ErrUnavailable))
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		<-f.sem
		return
	}
	f.wg.Add(1)
	f.mu.Unlock()
	go f.serve(m)
}

// serve runs one forwarded request through its namespace's handler and replies.
func (f *Forwarder) serve(m *nats.Msg) {
	defer f.wg.Done()
	defer func() { <-f.sem }()
	f.in.Add(1)
	ns := m.Header.Get(hdrNamespace)
	f.mu.Lock()
	h := f.handlers[ns]
	f.mu.Unlock()
	if h == nil {
		f.reply(m, nil, fmt.Errorf("node %s serves no namespace %q: %w", f.name, ns, cluster.ErrUnavailable))
		return
	}
	id, err := durable.ParseID(ns, m.Header.Get(hdrID))
	if err != nil {
		f.reply(m, nil, err)
		return
	}
	dl, err := strconv.ParseInt(m.Header.Get(hdrDeadline), 10, 64)
	if err != nil {
		f.reply(m, nil, fmt.Errorf("bad %s header: %w", hdrDeadline, durable.ErrInvalid))
		return
	}
	ctx, cancel := context.WithDeadline(f.ctx, time.Unix(0, dl))
	defer cancel()
	resp, err := h(ctx, id, m.Data)
	f.reply(m, resp, err)
}

// reply answers a forwarded request with resp or with err's class and message.
func (f *Forwarder) reply(m *nats.Msg, resp []byte, err error) {
	r := nats.NewMsg(m.Reply)
	if err == nil && int64(len(resp)) > f.nc.MaxPayload()-forwardHeaderRoom {
		err = fmt.Errorf("response of %d bytes exceeds the cluster's max_payload", len(resp))
	}
	if err != nil {
		var no *NotOwnerError
		switch {
		case errors.As(err, &no):
			r.Header.Set(hdrError, errClassNotOwner)
			r.Header.Set(hdrOwner, no.Addr())
		case errors.Is(err, durable.ErrLeaseLost):
			// Nothing of the request was committed: the caller asks again.
			r.Header.Set(hdrError, errClassNotOwner)
		case errors.Is(err, durable.ErrInvalid):
			r.Header.Set(hdrError, errClassInvalid)
		case errors.Is(err, cluster.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
			r.Header.Set(hdrError, errClassUnavailable)
		default:
			r.Header.Set(hdrError, errClassInternal)
		}
		r.Data = []byte(err.Error())
	} else {
		r.Data = resp
	}
	if err := m.RespondMsg(r); err != nil {
		f.o.Logger.Warn("durable: replying to a forwarded request", "err", err)
	}
}

// Stats returns the forwarder's counters.
func (f *Forwarder) Stats() ForwardStats {
	return ForwardStats{Out: f.out.Load(), In: f.in.Load(), Refused: f.refused.Load()}
}

// Shutdown stops receiving and waits until the forwarded requests running here have
// answered or ctx ends; then it cancels those still running, and waits for them.
func (f *Forwarder) Shutdown(ctx context.Context) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	_ = f.sub.Unsubscribe()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	f.Close()
}

// Close stops receiving, cancels the forwarded requests running here and waits for them.
func (f *Forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	_ = f.sub.Unsubscribe()
	f.cancel()
	f.wg.Wait()
}
