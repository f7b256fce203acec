package worker

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/wsproto"
)

// objKey names a Durable Object: its namespace's storage name and its ID.
type objKey struct {
	ns string
	id durable.ID
}

// objSocket is a WebSocket the host holds for a Durable Object (hibernation): the object
// may be evicted while it stays open, and each of its messages is delivered to the object,
// re-activated when needed, as an invocation through the object's input gate.
type objSocket struct {
	c           *wsConn
	key         objKey
	tags        []string
	attach      []byte // under wsHub.mu
	guestClosed atomic.Bool

	// raw is the connection's descriptor when the socket can wait in wsSleepers (plain TCP);
	// slot, sleepGen and hub are its place there, under wsSleepers.mu.
	raw      syscall.RawConn
	slot     int32
	sleepGen uint32
	hub      *wsHub
}

// wsHub holds a worker's sockets of Durable Objects, by ID and by object, and runs one
// reader goroutine per open socket, which delivers the socket's messages in order.
type wsHub struct {
	w     *Worker
	stats wsStats

	mu      sync.Mutex
	ctx     context.Context // ends when the worker is closed
	cancel  context.CancelFunc
	byID    map[uint64]*objSocket
	byObj   map[objKey][]*objSocket // in accept order
	queues  map[objKey]*objQueue    // objects with events to deliver
	stopped bool
}

// init prepares the hub; w.ws.mu is held.
func (h *wsHub) initLocked() {
	if h.byID == nil {
		h.byID = map[uint64]*objSocket{}
		h.byObj = map[objKey][]*objSocket{}
		h.queues = map[objKey]*objQueue{}
		h.ctx, h.cancel = context.WithCancel(context.Background())
	}
}

// add registers a socket accepted by object key, not yet switched (the 101 is on its way).
func (h *wsHub) add(key objKey, tags []string) (*objSocket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.initLocked()
	if h.stopped {
		return nil, fmt.Errorf("worker %s is closing", h.w.name)
	}
	if len(h.byObj[key]) >= MaxWebSocketsPerObject {
		return nil, fmt.Errorf("the object holds %d WebSockets already (the limit)", MaxWebSocketsPerObject)
	}
	if len(h.byID) >= MaxWebSocketsPerWorker {
		return nil, fmt.Errorf("worker %s holds %d WebSockets for its Durable Objects already (the limit)", h.w.name, MaxWebSocketsPerWorker)
	}
	s := &objSocket{c: newWSConn(&h.stats), key: key, tags: tags}
	h.byID[s.c.id] = s
	h.byObj[key] = append(h.byObj[key], s)
	return s, nil
}

// start attaches the switched connection and starts the socket's reader: asleep in
// wsSleepers until the client sends, when the connection allows it.
func (h *wsHub) start(s *objSocket, conn io.ReadWriteCloser) {
	s.slot = -1
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	s.c.attach(conn)
	if h.canSleep(s) && wsSleepers.sleep(h, s) {
		return
	}
	go h.readLoop(s)
}

// canSleep reports whether s's reader may leave it to wsSleepers: it has a descriptor, no
// byte is buffered above it, and it is not closing (a closing socket waits for the client's
// close frame under a deadline).
func (h *wsHub) canSleep(s *objSocket) bool {
	if s.raw == nil {
		return false
	}
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent || c.ended {
		return false
	}
	b, ok := c.conn.(interface{ Buffered() int })
	return !ok || b.Buffered() == 0
}

// drop removes a socket that never switched, or closes one being torn down.
func (h *wsHub) drop(s *objSocket) {
	h.remove(s)
	s.c.terminate()
}

func (h *wsHub) remove(s *objSocket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byID[s.c.id] != s {
		return
	}
	delete(h.byID, s.c.id)
	list := h.byObj[s.key]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(h.byObj, s.key)
	} else {
		h.byObj[s.key] = list
	}
}

func (h *wsHub) lookup(id uint64) *objSocket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byID[id]
}

// list returns the open sockets of an object with tag ("" for all), in accept order.
func (h *wsHub) list(key objKey, tag string) []*objSocket {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*objSocket
	for _, s := range h.byObj[key] {
		if tag == "" || slices.Contains(s.tags, tag) {
			out = append(out, s)
		}
	}
	return out
}

func (h *wsHub) setAttachment(s *objSocket, v []byte) {
	h.mu.Lock()
	s.attach = slices.Clone(v)
	if len(v) == 0 {
		s.attach = nil
	}
	h.mu.Unlock()
}

func (h *wsHub) attachment(s *objSocket) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.attach
}

// count returns the open sockets held for objects.
func (h *wsHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byID)
}

// readLoop reads a socket's messages and queues each for its object, waiting for it to be
// delivered before reading the next (in order, and a client that sends faster than its
// object handles is slowed by TCP); it ends with the socket, queueing its close or error
// unless the object closed it itself. The guest runs on the object's dispatcher, not here,
// so that this goroutine's stack stays small while it waits for the client.
func (h *wsHub) readLoop(s *objSocket) {
	done := make(chan struct{}, 1)
	for {
		ev := s.c.next()
		if ev.kind != kindWSMessage {
			h.remove(s)
			if !s.guestClosed.Load() && h.ctx.Err() == nil {
				h.enqueue(s, ev, nil)
			}
			return
		}
		h.enqueue(s, ev, done)
		<-done
		if h.canSleep(s) && wsSleepers.sleep(h, s) {
			return // readLoop runs again when the client sends
		}
	}
}

// objQueue holds an object's socket events waiting for delivery, in arrival order.
type objQueue struct {
	events []queuedEvent
}

type queuedEvent struct {
	s    *objSocket
	ev   wsEvent
	done chan struct{} // signalled after delivery; nil for a socket's last event
}

// enqueue queues an event for the socket's object, starting the object's dispatcher when
// none runs.
func (h *wsHub) enqueue(s *objSocket, ev wsEvent, done chan struct{}) {
	h.mu.Lock()
	q := h.queues[s.key]
	start := q == nil
	if start {
		q = &objQueue{}
		h.queues[s.key] = q
	}
	q.events = append(q.events, queuedEvent{s: s, ev: ev, done: done})
	h.mu.Unlock()
	if start {
		go h.dispatch(s.key, q)
	}
}

// dispatch delivers an object's queued events one at a time until the queue is empty, then
// ends: an object without socket traffic has no goroutine.
func (h *wsHub) dispatch(key objKey, q *objQueue) {
	for {
		h.mu.Lock()
		if len(q.events) == 0 {
			delete(h.queues, key)
			h.mu.Unlock()
			return
		}
		e := q.events[0]
		q.events[0] = queuedEvent{}
		q.events = q.events[1:]
		h.mu.Unlock()
		h.deliver(e.s, e.ev)
		if e.done != nil {
			e.done <- struct{}{}
		}
	}
}

func (h *wsHub) deliver(s *objSocket, ev wsEvent) {
	if err := h.w.runWSEvent(h.ctx, s, &ev); err != nil && h.ctx.Err() == nil {
		log := h.w.reg.svc.Logger.With("worker", h.w.name)
		if v := h.w.cur.Load(); v != nil {
			log = v.log
		}
		log.Warn("durable object websocket event failed", "object", s.key.id.String(), "socket", s.c.id, "event", wsKindLabel(ev.kind), "err", err)
	}
}

func wsKindLabel(k uint32) string {
	switch k {
	case kindWSMessage:
		return "message"
	case kindWSClose:
		return "close"
	}
	return "error"
}

// close ends every socket (1001) when the worker is removed or the registry closed; their
// readers end with them and deliver nothing more.
func (h *wsHub) close() {
	h.mu.Lock()
	h.stopped = true
	if h.cancel != nil {
		h.cancel()
	}
	socks := make([]*objSocket, 0, len(h.byID))
	for _, s := range h.byID {
		socks = append(socks, s)
	}
	h.mu.Unlock()
	for _, s := range socks {
		s.c.closeAndEnd(wsproto.CloseGoingAway, "worker stopped")
	}
}

// runWSEvent delivers a socket's event to its object through the object's input gate,
// activating the object when it was evicted.
func (w *Worker) runWSEvent(ctx context.Context, s *objSocket, ev *wsEvent) error {
	cur := w.cur.Load()
	if cur == nil {
		return &Error{Kind: Unavailable, Worker: w.name}
	}
	binding, b := cur.bindingOf(s.key.ns)
	if b == nil {
		s.c.closeAndEnd(wsproto.CloseInternalError, "durable object namespace no longer bound")
		return fmt.Errorf("worker %s: no binding for namespace %s", w.name, s.key.ns)
	}
	return b.ns.Do(ctx, s.key.id, func(t *durable.Turn) error {
		_, _, err := w.invokeObject(ctx, t, binding, b.class, ev.kind, 0, func(inv *invocation) {
			inv.ws.event, inv.ws.sock = ev, s
		})
		return err
	})
}
