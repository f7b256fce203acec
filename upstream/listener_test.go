package upstream

import (
	"fmt"
	"net"
	"sync"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *countingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// closeAccepted closes every connection the listener accepted (an origin dropping idle conns).
func (l *countingListener) closeAccepted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprint(err))
	}
}
