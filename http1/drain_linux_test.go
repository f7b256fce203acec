package http1

import (
	"testing"
	"time"
)

// sleeping counts the connections in the sleeper's epoll set.
func sleeping() int {
	sl := &sleepers
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return len(sl.slots) - len(sl.free)
}

// A hibernating connection (in the sleeper's epoll set, no goroutine) is drained like any
// idle one: a request that arrives after the drain began is answered with
// "Connection: close"; one that stays idle is closed with a FIN once the grace is over.
func TestDrainHibernatedConnection(t *testing.T) {
	for _, sendAfter := range []bool{true, false} {
		grace := longGrace
		if !sendAfter {
			grace = 20 * time.Millisecond
		}
		addr, drain, ended := drainServer(t, &Server{Handler: echoHandler, DrainIdleGrace: grace})
		before := sleeping()
		c, br := servedConn(t, addr)
		deadline := time.Now().Add(10 * time.Second)
		for sleeping() <= before {
			if time.Now().After(deadline) {
				t.Fatal("the idle connection did not hibernate")
			}
			time.Sleep(10 * time.Millisecond)
		}
		drain()
		if sendAfter {
			wantClosingAnswer(t, c, br, "/after-drain")
		} else {
			wantCleanEnd(t, c, br)
		}
		waitEnded(t, ended)
	}
}
