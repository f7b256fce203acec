//go:build linux

package worker_test

import (
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/verge-edge/verge/worker"
)

// TestWebSocketIdleSocketsHaveNoGoroutine: the sockets a Durable Object holds wait in the
// shared epoll set, with no goroutine (and no stack) each, and still deliver their messages.
func TestWebSocketIdleSocketsHaveNoGoroutine(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, chatConfig(t))
	addr := wsServer(t, w)
	const n = 300
	before := runtime.NumGoroutine()
	socks := make([]*rawWS, n)
	for i := range socks {
		socks[i] = dialRaw(t, addr, fmt.Sprintf("/room/quiet?name=c%d", i))
		socks[i].c.SetDeadline(time.Time{})
	}
	waitFor(t, func() bool {
		rec, _ := serve(t, w, "GET", "/room/quiet/members", "")
		return rec.body.String() == fmt.Sprint(n)
	}, "members to join")
	// Connection goroutines end after the switch; give stragglers a bounded moment.
	var during int
	waitFor(t, func() bool { during = runtime.NumGoroutine(); return during-before < n/10 }, "goroutines to settle")
	// A message still wakes its socket and reaches every member.
	socks[7].frame(t, true, 1, []byte("hi"), false)
	for i, s := range socks {
		s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var h [2]byte
		if _, err := io.ReadFull(s.br, h[:]); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		p := make([]byte, h[1])
		if _, err := io.ReadFull(s.br, p); err != nil || string(p) != "c7: hi" {
			t.Fatalf("member %d got %q %v", i, p, err)
		}
	}
}
