package worker_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/http1"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// wsServer serves a worker over HTTP/1.1 on loopback, as the router does, and returns its
// address.
func wsServer(t *testing.T, w *worker.Worker) string {
	t.Helper()
	addr, stop := wsServerStop(t, w)
	t.Cleanup(stop)
	return addr
}

// wsServerStop is wsServer with its stop function: it closes the listener, cancels the
// connections' context and waits for every connection's handler to return.
func wsServerStop(t *testing.T, w *worker.Worker) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http1.Server{Handler: func(ex *http1.Exchange) {
		req := &worker.Request{Message: ex.Request(), RemoteAddr: "127.0.0.1"}
		if _, err := w.Serve(ex.Context(), ex, req); err != nil {
			var we *worker.Error
			status := 500
			if e, ok := err.(*worker.Error); ok {
				we = e
				status = we.StatusCode()
				if we.Responded {
					ex.Abort(err)
					return
				}
			}
			resp := &message.Response{Status: status, ContentLength: 0}
			ex.WriteHeader(resp)
			ex.Finish(nil)
		}
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				info := &message.ConnInfo{RemoteAddr: netip.MustParseAddrPort(c.RemoteAddr().String()), Proto: message.HTTP11}
				srv.ServeConn(ctx, c, info)
			}()
		}
	}()
	var once sync.Once
	return ln.Addr().String(), func() {
		once.Do(func() {
			ln.Close()
			cancel()
			wg.Wait()
		})
	}
}

func chatConfig(t testing.TB) worker.Config {
	return worker.Config{
		Name:    "chat",
		Module:  testwasm.Build(t, "examples/workers/chat"),
		Durable: map[string]worker.DurableBinding{"ROOMS": {Class: "Room"}},
	}
}

func dialWS(t *testing.T, ctx context.Context, addr, path string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", path, err, resp)
	}
	c.SetReadLimit(2 << 20)
	return c
}

func readText(t *testing.T, ctx context.Context, c *websocket.Conn) string {
	t.Helper()
	typ, p, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	return string(p)
}

// TestWebSocketWorkerEcho: a worker accepts a socket itself and echoes text and binary
// messages, outliving its wall time limit while it waits; the client's close is answered.
func TestWebSocketWorkerEcho(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	cfg := chatConfig(t)
	cfg.Limits.WallTime = 200 * time.Millisecond
	w := e.deploy(t, cfg)
	addr := wsServer(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialWS(t, ctx, addr, "/echo")
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, ctx, c); got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
		if i == 1 {
			// Longer than the wall time limit with the socket idle: it must stay open.
			time.Sleep(400 * time.Millisecond)
		}
	}
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i)
	}
	if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	typ, p, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageBinary || string(p) != string(big) {
		t.Fatalf("binary echo: type %v, %d bytes, %v", typ, len(p), err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Fatalf("after bye: %v, want close 1000", err)
	}
	// A plain request to the echo path gets the worker's 426.
	rec, _ := serve(t, w, "GET", "/echo", "")
	if rec.status != 426 {
		t.Fatalf("plain GET /echo: %d, want 426", rec.status)
	}
}

// TestWebSocketRoomBroadcastAndHibernation: sockets accepted by a Durable Object get every
// member's messages in order; the object is evicted while its sockets stay open and is woken
// by the next message, with each socket's attachment intact.
func TestWebSocketRoomBroadcastAndHibernation(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{ObjectIdleTimeout: 50 * time.Millisecond})
	w := e.deploy(t, chatConfig(t))
	addr := wsServer(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const members, msgs = 4, 20
	conns := make([]*websocket.Conn, members)
	for i := range conns {
		conns[i] = dialWS(t, ctx, addr, fmt.Sprintf("/room/lobby?name=m%d", i))
	}
	waitFor(t, func() bool {
		rec, _ := serve(t, w, "GET", "/room/lobby/members", "")
		return rec.body.String() == fmt.Sprint(members)
	}, "members to join")
	if got := w.Stats().WebSockets; got != members {
		t.Fatalf("Stats.WebSockets = %d, want %d", got, members)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range msgs {
				if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(j))); err != nil {
					t.Errorf("member %d write: %v", i, err)
					return
				}
			}
		}()
	}
	// Every member gets members*msgs messages, each sender's in its order.
	for i, c := range conns {
		next := make([]int, members)
		for range members * msgs {
			s := readText(t, ctx, c)
			var from, n int
			if _, err := fmt.Sscanf(s, "m%d: %d", &from, &n); err != nil || from >= members {
				t.Fatalf("member %d got %q", i, s)
			}
			if n != next[from] {
				t.Fatalf("member %d got %q, want m%d: %d (out of order)", i, s, from, next[from])
			}
			next[from]++
		}
	}
	wg.Wait()
	// Hibernation: the room is evicted with its sockets open.
	before := w.Stats().Evictions
	waitFor(t, func() bool { st := w.Stats(); return st.Evictions > before && st.LiveObjects == 0 }, "the room to be evicted")
	if got := w.Stats().WebSockets; got != members {
		t.Fatalf("after eviction Stats.WebSockets = %d, want %d", got, members)
	}
	if err := conns[2].Write(ctx, websocket.MessageText, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if got := readText(t, ctx, c); got != "m2: after" {
			t.Fatalf("member %d after eviction got %q, want %q (the attachment keeps the name)", i, got, "m2: after")
		}
	}
	if err := conns[0].Write(ctx, websocket.MessageText, []byte("/who")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, ctx, conns[0]); got != fmt.Sprintf("members: %d", members) {
		t.Fatalf("/who = %q", got)
	}
	// A member that leaves is gone from the room.
	conns[3].Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool {
		rec, _ := serve(t, w, "GET", "/room/lobby/members", "")
		return rec.body.String() == fmt.Sprint(members-1)
	}, "the member to leave")
	st := w.Stats()
	if st.WebSocketMessagesIn < members*msgs+2 || st.WebSocketMessagesOut < members*members*msgs {
		t.Fatalf("Stats messages in %d out %d, want at least %d and %d", st.WebSocketMessagesIn, st.WebSocketMessagesOut, members*msgs+2, members*members*msgs)
	}
	if got := st.Invocations["websocket_message"]; got < members*msgs {
		t.Errorf("Stats invocations websocket_message %d, want at least %d", got, members*msgs)
	}
}

// TestWebSocketObjectAcceptWithoutUpgrade: an object asked to accept a request that is no
// handshake (here a plain request the worker forwarded) fails clearly, and the worker
// answers.
func TestWebSocketObjectAcceptWithoutUpgrade(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, chatConfig(t))
	// The Upgrade field without a valid handshake reaches the room's AcceptWebSocket.
	req := &message.Request{Method: "GET", Target: "/room/x", Authority: "example.com", Proto: message.HTTP11}
	req.Header.Add("Upgrade", "websocket")
	rec := &recorder{}
	if _, err := w.Serve(context.Background(), rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if rec.status != 400 || !strings.Contains(rec.body.String(), "not a WebSocket opening handshake") {
		t.Fatalf("got %d %q, want 400 naming the missing handshake", rec.status, rec.body.String())
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawWS is a hand-written client that can break the protocol.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr, path string) *rawWS {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("handshake: %q %v", status, err)
	}
	accept := false
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.EqualFold(l, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") {
			accept = true
		}
		if l == "\r\n" {
			break
		}
	}
	if !accept {
		t.Fatal("101 without the right Sec-WebSocket-Accept")
	}
	return &rawWS{c: c, br: br}
}

// frame writes a frame; masked unless unmasked.
func (r *rawWS) frame(t *testing.T, fin bool, op byte, payload []byte, unmasked bool) {
	t.Helper()
	b := op
	if fin {
		b |= 0x80
	}
	out := []byte{b}
	m := byte(0x80)
	if unmasked {
		m = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, m|byte(n))
	case n <= 0xffff:
		out = append(out, m|126, byte(n>>8), byte(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !unmasked {
		key := [4]byte{1, 2, 3, 4}
		out = append(out, key[:]...)
		for i, c := range payload {
			out = append(out, c^key[i&3])
		}
	} else {
		out = append(out, payload...)
	}
	if _, err := r.c.Write(out); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// closeCode reads server frames until a close frame and returns its code; then the server
// must end the connection.
func (r *rawWS) closeCode(t *testing.T) int {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(r.br, h[:]); err != nil {
			t.Fatalf("reading for a close frame: %v", err)
		}
		if h[1]&0x80 != 0 {
			t.Fatal("server frame is masked")
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var x [2]byte
			io.ReadFull(r.br, x[:])
			n = int(binary.BigEndian.Uint16(x[:]))
		case 127:
			var x [8]byte
			io.ReadFull(r.br, x[:])
			n = int(binary.BigEndian.Uint64(x[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r.br, p); err != nil {
			t.Fatal(err)
		}
		if h[0]&0x0f == 8 {
			if len(p) < 2 {
				return 1005
			}
			code := int(binary.BigEndian.Uint16(p))
			if _, err := r.br.ReadByte(); err == nil {
				t.Fatal("the server sent more after its close frame")
			}
			return code
		}
	}
}

// TestWebSocketFrameAttacks: protocol violations get the close code RFC 6455 asks for, on a
// worker's own socket and on one held for a Durable Object, and the connection ends.
func TestWebSocketFrameAttacks(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, chatConfig(t))
	addr := wsServer(t, w)
	cases := []struct {
		name string
		send func(t *testing.T, r *rawWS)
		code int
	}{
		{"unmasked frame", func(t *testing.T, r *rawWS) { r.frame(t, true, 1, []byte("hi"), true) }, 1002},
		{"oversized message", func(t *testing.T, r *rawWS) { r.frame(t, true, 2, make([]byte, worker.MaxWebSocketMessage+1), false) }, 1009},
		{"oversized fragments", func(t *testing.T, r *rawWS) {
			r.frame(t, false, 2, make([]byte, worker.MaxWebSocketMessage/2+1), false)
			r.frame(t, true, 0, make([]byte, worker.MaxWebSocketMessage/2+1), false)
		}, 1009},
		{"bad utf-8", func(t *testing.T, r *rawWS) { r.frame(t, true, 1, []byte{'a', 0xc3, 0x28}, false) }, 1007},
		{"fragmented ping", func(t *testing.T, r *rawWS) { r.frame(t, false, 9, []byte("p"), false) }, 1002},
		{"long ping", func(t *testing.T, r *rawWS) { r.frame(t, true, 9, make([]byte, 126), false) }, 1002},
		{"reserved opcode", func(t *testing.T, r *rawWS) { r.frame(t, true, 5, nil, false) }, 1002},
		{"continuation first", func(t *testing.T, r *rawWS) { r.frame(t, true, 0, []byte("x"), false) }, 1002},
		{"client close echoed", func(t *testing.T, r *rawWS) { r.frame(t, true, 8, []byte{0x0f, 0xa0, 'o', 'k'}, false) }, 4000},
	}
	for _, path := range []string{"/echo", "/room/attack"} {
		for _, c := range cases {
			t.Run(strings.TrimPrefix(path, "/")+"/"+c.name, func(t *testing.T) {
				r := dialRaw(t, addr, path)
				// A ping first: the host answers pongs itself.
				r.frame(t, true, 9, []byte("p1"), false)
				var h [4]byte
				if _, err := io.ReadFull(r.br, h[:]); err != nil || h[0] != 0x8a || string(h[2:]) != "p1" {
					t.Fatalf("pong: % x %v", h, err)
				}
				c.send(t, r)
				if got := r.closeCode(t); got != c.code {
					t.Fatalf("close code %d, want %d", got, c.code)
				}
			})
		}
	}
	waitFor(t, func() bool { return w.Stats().WebSockets == 0 }, "every socket to be released")
}

var _ = durable.DefaultIdleTimeout

// TestWebSocketSlowConsumerIsDisconnected: a member that never reads is disconnected once
// its queue passes MaxWebSocketQueue, and the room goes on serving the others in order.
func TestWebSocketSlowConsumerIsDisconnected(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, chatConfig(t))
	addr := wsServer(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := dialRaw(t, addr, "/room/slow?name=slow") // never reads
	fast := dialWS(t, ctx, addr, "/room/slow?name=f")
	waitFor(t, func() bool {
		rec, _ := serve(t, w, "GET", "/room/slow/members", "")
		return rec.body.String() == "2"
	}, "members to join")
	const n = 640 // 40 MiB: beyond the kernel's buffers and the 4 MiB queue
	payload := strings.Repeat("x", 64<<10)
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if err := fast.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("%d %s", i, payload))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		s := readText(t, ctx, fast)
		if want := fmt.Sprintf("f: %d ", i); !strings.HasPrefix(s, want) {
			t.Fatalf("message %d starts %q, want %q", i, s[:min(len(s), 20)], want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		rec, _ := serve(t, w, "GET", "/room/slow/members", "")
		return rec.body.String() == "1"
	}, "the slow member to be disconnected")
	if got := w.Stats().WebSockets; got != 1 {
		t.Fatalf("open sockets %d, want 1", got)
	}
	_ = slow
}

// TestWebSocketSurvivesRedeploy: a room's sockets stay open across a deploy of a new
// version, whose instance handles the next message.
func TestWebSocketSurvivesRedeploy(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	cfg := chatConfig(t)
	w := e.deploy(t, cfg)
	addr := wsServer(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := dialWS(t, ctx, addr, "/room/deploy?name=a")
	b := dialWS(t, ctx, addr, "/room/deploy?name=b")
	waitFor(t, func() bool {
		rec, _ := serve(t, w, "GET", "/room/deploy/members", "")
		return rec.body.String() == "2"
	}, "members to join")
	a.Write(ctx, websocket.MessageText, []byte("v1"))
	for _, c := range []*websocket.Conn{a, b} {
		if got := readText(t, ctx, c); got != "a: v1" {
			t.Fatalf("before the deploy: %q", got)
		}
	}
	cfg.Env = map[string]string{"DEPLOY": "2"} // another configuration: a new version
	e.deploy(t, cfg)
	b.Write(ctx, websocket.MessageText, []byte("v2"))
	for _, c := range []*websocket.Conn{a, b} {
		if got := readText(t, ctx, c); got != "b: v2" {
			t.Fatalf("after the deploy: %q", got)
		}
	}
	if got := w.Stats().WebSockets; got != 2 {
		t.Fatalf("open sockets %d after the deploy, want 2", got)
	}
}

// TestWebSocketWorkerCPULimitPerMessage: a worker holding a socket runs under its CPU limit
// per message: messages that together use several times the limit pass, one message that
// loops is stopped, and the socket is closed with 1011.
func TestWebSocketWorkerCPULimitPerMessage(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	const limit = 300 * time.Millisecond
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{CPUTime: limit}))
	// Calibrate: iterations per millisecond of this guest's CPU time on this machine.
	const probe = 20_000_000
	_, res, err := serveRes(t, w, "GET", fmt.Sprintf("/spin?n=%d", probe))
	if err != nil || res.CPU <= 0 {
		t.Fatalf("calibration: %v, cpu %v", err, res.CPU)
	}
	perMessage := int(float64(probe) * float64(limit/4) / float64(res.CPU)) // about a quarter of the limit
	addr := wsServer(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialWS(t, ctx, addr, "/ws-spin")
	for i := range 8 { // about twice the limit in all
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(perMessage))); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, ctx, c); !strings.HasPrefix(got, "spun") {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("loop")); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusInternalError {
		t.Fatalf("after a looping message: %v, want close 1011", err)
	}
	if got := w.Stats().Errors["cpu_limit"]; got < 1 {
		t.Fatalf("cpu_limit errors %d, want the loop counted", got)
	}
}

// TestWebSocketWorkerSocketEndsOnShutdown: a worker waiting in Receive returns when the
// server stops (its connection context ends), so that a shutdown is not held by open sockets.
func TestWebSocketWorkerSocketEndsOnShutdown(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, chatConfig(t))
	addr, stop := wsServerStop(t, w)
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialWS(t, ctx, addr, "/echo")
	c.Write(ctx, websocket.MessageText, []byte("x"))
	if got := readText(t, ctx, c); got != "x" {
		t.Fatalf("echo %q", got)
	}
	stopped := make(chan struct{})
	go func() {
		stop() // returns only once the echo handler returned
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the server stop waited for the worker's socket")
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("the socket is still open after the stop")
	}
	waitFor(t, func() bool { return w.Stats().WebSockets == 0 }, "the socket to be released")
}
