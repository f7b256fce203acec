package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/internal/wsproto"
	"github.com/verge-edge/verge/message"
)

// Invocation kinds of the sockets held for Durable Objects, as the reader reports them.
const (
	kindWSMessage = workerabi.KindWSMessage
	kindWSClose   = workerabi.KindWSClose
	kindWSError   = workerabi.KindWSError
)

// wsUpgrade is a client's WebSocket opening handshake waiting in a worker invocation: the
// exchange that can switch protocols and the client's key. The worker accepts it itself
// (WS_ACCEPT) or passes it, with the request, to a Durable Object (DO_FETCH) that accepts it
// (WS_ACCEPT_OBJECT) and answers 101; the worker's 101 response then switches the
// connection, and the socket joins the object's.
type wsUpgrade struct {
	up        message.Upgrader
	key       string
	protocols string // Sec-WebSocket-Protocol the client offered

	mu   sync.Mutex
	used bool       // accepted by the worker or an object
	sock *objSocket // accepted by an object, waiting for the 101
	// tunnel is a container's accepted WebSocket, waiting for the 101 (container_ws.go).
	tunnel *wsTunnel
}

// wsUpgradeKey carries a *wsUpgrade in the context of a Durable Object request.
type wsUpgradeKey struct{}

// newWSUpgrade returns the upgrade of req when it is a valid WebSocket opening handshake on
// an exchange that can switch protocols (HTTP/1.1), else nil.
func newWSUpgrade(out ResponseWriter, req *message.Request) *wsUpgrade {
	if req.Proto != message.HTTP11 || !req.Header.Has("Upgrade") {
		return nil
	}
	up, ok := out.(message.Upgrader)
	if !ok {
		return nil
	}
	key, err := wsproto.CheckRequest(req.Method, &req.Header)
	if err != nil {
		return nil
	}
	return &wsUpgrade{up: up, key: key, protocols: req.Header.Get("Sec-WebSocket-Protocol")}
}

// switchResponse is the 101 answering the handshake, with protocol when one was chosen.
func (u *wsUpgrade) switchResponse(protocol string) *message.Response {
	r := &message.Response{Status: 101, Proto: message.HTTP11}
	r.Header.Add("Upgrade", "websocket")
	r.Header.Add("Connection", "Upgrade")
	r.Header.Add("Sec-WebSocket-Accept", wsproto.AcceptKey(u.key))
	if protocol != "" {
		r.Header.Add("Sec-WebSocket-Protocol", protocol)
	}
	return r
}

// checkProtocol reports whether protocol ("" for none) is one the client offered.
func (u *wsUpgrade) checkProtocol(protocol string) error {
	if protocol == "" {
		return nil
	}
	for _, p := range strings.Split(u.protocols, ",") {
		if strings.TrimSpace(p) == protocol {
			return nil
		}
	}
	return fmt.Errorf("subprotocol %q was not offered by the client (%q)", protocol, u.protocols)
}

// wsInvocation is an invocation's WebSocket state.
type wsInvocation struct {
	up     *wsUpgrade // kind 0: the request's opening handshake, nil when it is none
	direct []*wsConn  // kind 0: sockets the invocation accepted itself
	stops  []func() bool
	sock   *objSocket // kinds 3..5: the socket of the event
	event  *wsEvent
}

// upgrade returns the opening handshake this invocation may accept: its own request's, or
// in a Durable Object request, the one the calling worker passed along.
func (inv *invocation) upgrade() *wsUpgrade {
	if inv.ws.up != nil {
		return inv.ws.up
	}
	if inv.kind == workerabi.KindDOFetch && inv.ctx != nil {
		u, _ := inv.ctx.Value(wsUpgradeKey{}).(*wsUpgrade)
		return u
	}
	return nil
}

// withUpgrade passes the invocation's pending handshake to a Durable Object request.
func (inv *invocation) withUpgrade(ctx context.Context) context.Context {
	if u := inv.upgrade(); u != nil {
		u.mu.Lock()
		used := u.used
		u.mu.Unlock()
		if !used {
			return context.WithValue(ctx, wsUpgradeKey{}, u)
		}
	}
	return ctx
}

// switchAllowed reports whether the invocation may answer 101: a Durable Object accepted
// the request's handshake.
func (inv *invocation) switchAllowed() bool {
	u := inv.upgrade()
	if u == nil {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sock != nil || u.tunnel != nil
}

// switchProtocols answers the worker's 101 response: the connection switches and the socket
// an object accepted starts reading.
func (inv *invocation) switchProtocols() (uint32, []byte) {
	u := inv.ws.up
	u.mu.Lock()
	s, tun := u.sock, u.tunnel
	u.sock, u.tunnel = nil, nil
	u.mu.Unlock()
	protocol := inv.resp.Header.Get("Sec-WebSocket-Protocol")
	if tun != nil {
		// A container accepted the handshake: join the client's connection to it.
		inv.started, inv.ended, inv.status = true, true, 101
		conn, err := u.up.Upgrade(u.switchResponse(protocol))
		if err != nil {
			tun.close()
			return fail(workerabi.StatusInternal, fmt.Errorf("switching to the WebSocket protocol: %w", err))
		}
		go tun.join(conn)
		return workerabi.StatusOK, nil
	}
	if err := u.checkProtocol(protocol); err != nil {
		inv.inst.v.w.ws.drop(s)
		return fail(workerabi.StatusInvalid, err)
	}
	inv.started, inv.ended, inv.status = true, true, 101
	conn, err := u.up.Upgrade(u.switchResponse(protocol))
	if err != nil {
		inv.inst.v.w.ws.drop(s)
		return fail(workerabi.StatusInternal, fmt.Errorf("switching to the WebSocket protocol: %w", err))
	}
	inv.inst.v.w.ws.start(s, conn)
	return workerabi.StatusOK, nil
}

// finishWS ends the invocation's WebSocket state: its own sockets are closed (1000, or 1011
// when it failed) and a socket an object accepted for a handshake the worker did not
// answer with 101 is dropped.
func (inv *invocation) finishWS(failed bool) {
	ws := &inv.ws
	code, reason := wsproto.CloseNormal, ""
	if failed {
		code, reason = wsproto.CloseInternalError, "worker failed"
	}
	for _, c := range ws.direct {
		c.closeAndEnd(code, reason)
	}
	for _, stop := range ws.stops {
		stop()
	}
	if u := ws.up; u != nil {
		u.mu.Lock()
		s, tun := u.sock, u.tunnel
		u.sock, u.tunnel = nil, nil
		u.mu.Unlock()
		if s != nil {
			inv.inst.v.w.ws.drop(s)
		}
		if tun != nil {
			tun.close()
		}
	}
	*ws = wsInvocation{direct: ws.direct[:0], stops: ws.stops[:0]}
	clear(ws.direct[:cap(ws.direct)])
	clear(ws.stops[:cap(ws.stops)])
}

// wsOp serves the WebSocket operations.
func (inv *invocation) wsOp(op uint32, arg []byte) (uint32, []byte) {
	d := workerabi.Decoder{B: arg}
	e := &inv.e
	switch op {
	case workerabi.OpWSAccept:
		return inv.wsAccept(&d)
	case workerabi.OpWSAcceptObject:
		return inv.wsAcceptObject(&d)
	case workerabi.OpWSReceive:
		id := uint64(d.I64())
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		c := inv.directSocket(id)
		if c == nil {
			return fail(workerabi.StatusInvalid, fmt.Errorf("websocket %d was not accepted by this invocation (a Durable Object's sockets deliver their messages as events)", id))
		}
		return inv.wsReceive(c)
	case workerabi.OpWSSend:
		id := uint64(d.I64())
		typ := d.U8()
		data := d.Raw()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		c, err := inv.socket(id)
		if err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		op := byte(wsproto.OpBinary)
		if typ == workerabi.WSText {
			op = wsproto.OpText
		}
		if err := c.send(op, data); err != nil {
			if errors.Is(err, errWSQueueFull) {
				return fail(workerabi.StatusLimit, err)
			}
			return fail(workerabi.StatusInvalid, err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpWSClose:
		id := uint64(d.I64())
		code := int(d.U32())
		reason := d.Str()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if code != wsproto.CloseNormal && (code < 3000 || code > 4999) {
			return fail(workerabi.StatusInvalid, fmt.Errorf("close code %d: use 1000 or 3000..4999", code))
		}
		if len(reason) > wsproto.MaxCloseReason {
			return fail(workerabi.StatusInvalid, fmt.Errorf("close reason longer than %d bytes", wsproto.MaxCloseReason))
		}
		c, err := inv.socket(id)
		if err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		if s := inv.inst.v.w.ws.lookup(id); s != nil {
			s.guestClosed.Store(true)
		}
		c.close(code, reason)
		return workerabi.StatusOK, nil
	case workerabi.OpWSList:
		tag := d.Str()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		key, err := inv.objectKey()
		if err != nil {
			return fail(workerabi.StatusUnavailable, err)
		}
		socks := inv.inst.v.w.ws.list(key, tag)
		e.U32(uint32(len(socks)))
		for _, s := range socks {
			e.I64(int64(s.c.id))
			e.U32(uint32(len(s.tags)))
			for _, t := range s.tags {
				e.Str(t)
			}
		}
		return workerabi.StatusOK, e.B
	case workerabi.OpWSEvent:
		ev, s := inv.ws.event, inv.ws.sock
		if ev == nil {
			return fail(workerabi.StatusUnavailable, errors.New("not a WebSocket event invocation"))
		}
		e.I64(int64(s.c.id))
		switch ev.kind {
		case kindWSMessage:
			e.U8(wsType(ev.op))
			e.Bytes(ev.data)
		case kindWSClose:
			e.U32(uint32(ev.code))
			e.Str(ev.reason)
			e.Bool(ev.clean)
		default:
			e.Str(ev.reason)
		}
		return workerabi.StatusOK, e.B
	case workerabi.OpWSAttachSet, workerabi.OpWSAttachGet:
		id := uint64(d.I64())
		var val []byte
		if op == workerabi.OpWSAttachSet {
			val = d.Raw()
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		s, err := inv.objectSocket(id)
		if err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		if op == workerabi.OpWSAttachSet {
			if len(val) > MaxWebSocketAttachment {
				return fail(workerabi.StatusInvalid, fmt.Errorf("attachment of %d bytes exceeds %d", len(val), MaxWebSocketAttachment))
			}
			inv.inst.v.w.ws.setAttachment(s, val)
			return workerabi.StatusOK, nil
		}
		a := inv.inst.v.w.ws.attachment(s)
		e.Bool(a != nil)
		e.Bytes(a)
		return workerabi.StatusOK, e.B
	}
	return fail(workerabi.StatusUnavailable, fmt.Errorf("unknown host operation %d", op))
}

func wsType(op byte) uint8 {
	if op == wsproto.OpText {
		return workerabi.WSText
	}
	return workerabi.WSBinary
}

// wsAccept accepts the request's WebSocket in the worker itself: the 101 is sent at once
// and the socket lives until the invocation ends.
func (inv *invocation) wsAccept(d *workerabi.Decoder) (uint32, []byte) {
	protocol := d.Str()
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	u := inv.ws.up
	if inv.kind != workerabi.KindFetch || u == nil {
		return fail(workerabi.StatusInvalid, errNoUpgrade)
	}
	if inv.started {
		return fail(workerabi.StatusInvalid, errors.New("response already started"))
	}
	if err := u.checkProtocol(protocol); err != nil {
		return fail(workerabi.StatusInvalid, err)
	}
	u.mu.Lock()
	used := u.used
	u.used = true
	u.mu.Unlock()
	if used {
		return fail(workerabi.StatusInvalid, errors.New("the request's WebSocket was accepted already"))
	}
	inv.started, inv.ended, inv.status = true, true, 101
	conn, err := u.up.Upgrade(u.switchResponse(protocol))
	if err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("switching to the WebSocket protocol: %w", err))
	}
	c := newWSConn(&inv.inst.v.w.ws.stats)
	c.attach(conn)
	inv.ws.direct = append(inv.ws.direct, c)
	// A server stop or a client gone ends the socket, and with it a Receive in progress.
	inv.ws.stops = append(inv.ws.stops, context.AfterFunc(inv.ctx, c.terminate))
	inv.e.I64(int64(c.id))
	return workerabi.StatusOK, inv.e.B
}

var errNoUpgrade = errors.New("the request is not a WebSocket opening handshake on a connection that can switch protocols (HTTP/1.1 GET with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key)")

// wsReceive waits for the next message of a socket the invocation accepted. The wait counts
// against neither the CPU nor the wall time limit: each message starts both afresh (a worker
// holding a socket runs under its limits per message), and WebSocketIdleTimeout bounds the
// wait.
func (inv *invocation) wsReceive(c *wsConn) (uint32, []byte) {
	i := inv.inst
	l := &i.v.limits
	i.wallDeadline.Store(math.MaxInt64)
	i.wall.Stop()
	ev := c.next()
	now := time.Now()
	inv.wallEnd = now.Add(l.WallTime)
	i.wallDeadline.Store(int64(inv.wallEnd.Sub(clockBase)))
	i.wall.Reset(l.WallTime)
	inv.cpu.renew()
	if inv.ioCancel != nil {
		inv.ioCancel()
		inv.ioCtx, inv.ioCancel = nil, nil
	}
	e := &inv.e
	switch ev.kind {
	case kindWSMessage:
		e.U8(wsType(ev.op))
		e.Bytes(ev.data)
	case kindWSClose:
		e.U8(workerabi.WSClose)
		e.U32(uint32(ev.code))
		e.Str(ev.reason)
		e.Bool(ev.clean)
	default:
		e.U8(workerabi.WSClose)
		e.U32(uint32(ev.code))
		e.Str(ev.reason)
		e.Bool(false)
	}
	return workerabi.StatusOK, e.B
}

// renew starts a new CPU budget (a WebSocket message); the meter is paused.
func (m *cpuMeter) renew() {
	m.counted, m.wallDone = 0, 0
}

// directSocket returns the socket id the invocation accepted itself, or nil.
func (inv *invocation) directSocket(id uint64) *wsConn {
	for _, c := range inv.ws.direct {
		if c.id == id {
			return c
		}
	}
	return nil
}

// socket returns socket id as the invocation may use it: one it accepted, or one held for
// its Durable Object.
func (inv *invocation) socket(id uint64) (*wsConn, error) {
	if c := inv.directSocket(id); c != nil {
		return c, nil
	}
	s, err := inv.objectSocket(id)
	if err != nil {
		return nil, err
	}
	return s.c, nil
}

// objectKey names the invocation's Durable Object in the hub.
func (inv *invocation) objectKey() (objKey, error) {
	if inv.turn == nil {
		return objKey{}, errors.New("not a Durable Object invocation")
	}
	b := inv.inst.v.durable[inv.nsName]
	if b == nil {
		return objKey{}, fmt.Errorf("no Durable Object namespace bound as %q", inv.nsName)
	}
	return objKey{ns: b.ns.Name(), id: inv.turn.Object.ID}, nil
}

// objectSocket returns socket id of the invocation's Durable Object.
func (inv *invocation) objectSocket(id uint64) (*objSocket, error) {
	if s := inv.ws.sock; s != nil && s.c.id == id {
		return s, nil // the event's socket, also after it ended
	}
	key, err := inv.objectKey()
	if err != nil {
		return nil, fmt.Errorf("websocket %d: %w", id, err)
	}
	s := inv.inst.v.w.ws.lookup(id)
	if s == nil || s.key != key {
		return nil, fmt.Errorf("websocket %d is not open in this Durable Object", id)
	}
	return s, nil
}

// wsAcceptObject accepts the handshake the calling worker passed along for the object: the
// host holds the socket for the object from now on (hibernation), and the object answers
// 101.
func (inv *invocation) wsAcceptObject(d *workerabi.Decoder) (uint32, []byte) {
	protocol := d.Str()
	n := d.Count(4)
	if d.Err == nil && n > MaxWebSocketTags {
		return fail(workerabi.StatusInvalid, fmt.Errorf("%d tags exceed %d", n, MaxWebSocketTags))
	}
	var tags []string
	for range n {
		t := d.Str()
		if len(t) == 0 || len(t) > MaxWebSocketTagLen {
			return fail(workerabi.StatusInvalid, fmt.Errorf("a tag must be 1..%d bytes", MaxWebSocketTagLen))
		}
		tags = append(tags, t)
	}
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if inv.kind != workerabi.KindDOFetch {
		return fail(workerabi.StatusUnavailable, errors.New("AcceptWebSocket with hibernation is only available in a Durable Object's request"))
	}
	key, err := inv.objectKey()
	if err != nil {
		return fail(workerabi.StatusUnavailable, err)
	}
	u := inv.upgrade()
	if u == nil {
		return fail(workerabi.StatusInvalid, errors.New("the request is not a WebSocket opening handshake from a client connected to this node: forward the client's upgrade request unchanged with the stub's Fetch (sockets of a Durable Object on another cluster node are not supported)"))
	}
	if err := u.checkProtocol(protocol); err != nil {
		return fail(workerabi.StatusInvalid, err)
	}
	u.mu.Lock()
	if u.used {
		u.mu.Unlock()
		return fail(workerabi.StatusInvalid, errors.New("the request's WebSocket was accepted already"))
	}
	s, err := inv.inst.v.w.ws.add(key, tags)
	if err != nil {
		u.mu.Unlock()
		return fail(workerabi.StatusLimit, err)
	}
	u.used, u.sock = true, s
	u.mu.Unlock()
	inv.e.I64(int64(s.c.id))
	return workerabi.StatusOK, inv.e.B
}
