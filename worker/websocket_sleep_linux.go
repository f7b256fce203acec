//go:build linux

package worker

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// wsSleepers holds the idle WebSockets of every registry in the process.
var wsSleepers wsSleeper

// wsSleeper watches idle WebSockets held for Durable Objects in one epoll set, waited on by
// one goroutine through the runtime's poller (the epoll descriptor is itself pollable): an
// idle socket has no goroutine and no stack, only its wsConn and the runtime's socket state.
// A readable socket is taken out of the set (its registration is one-shot) and read by a
// goroutine that puts it back once its message is delivered. Once a second the sockets asleep
// are checked for the idle timeout and for closes started meanwhile, which wake them too.
type wsSleeper struct {
	once sync.Once
	err  error // setup failed: sockets wait on a goroutine each instead
	epfd int
	ep   *os.File
	raw  syscall.RawConn

	mu    sync.Mutex
	slots []*objSocket // by objSocket.slot; nil is free
	free  []int32
	gen   uint32
}

// wsSweep is how often sleeping sockets are checked for their idle timeout and closes.
const wsSweep = time.Second

func (sl *wsSleeper) init() {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		sl.err = err
		return
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		sl.err = err
		return
	}
	sl.epfd = fd
	sl.ep = os.NewFile(uintptr(fd), "websocket-sleeper")
	// A deadline only works on a descriptor the runtime's poller took: this tells whether
	// the loop can park on it.
	if err := sl.ep.SetReadDeadline(time.Time{}); err != nil {
		sl.ep.Close()
		sl.err = err
		return
	}
	if sl.raw, err = sl.ep.SyscallConn(); err != nil {
		sl.ep.Close()
		sl.err = err
		return
	}
	go sl.loop()
	go sl.sweepLoop()
}

// sleep puts s, whose reader is about to wait for the client, in the set; false when it
// cannot (the caller's goroutine then waits). On readiness h.readLoop runs again for s.
func (sl *wsSleeper) sleep(h *wsHub, s *objSocket) bool {
	if s.raw == nil {
		return false
	}
	sl.once.Do(sl.init)
	if sl.err != nil {
		return false
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var slot int32
	if n := len(sl.free); n > 0 {
		slot = sl.free[n-1]
		sl.free = sl.free[:n-1]
	} else {
		slot = int32(len(sl.slots))
		sl.slots = append(sl.slots, nil)
	}
	sl.gen++
	s.slot, s.sleepGen, s.hub = slot, sl.gen, h
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: slot, Pad: int32(sl.gen)}
	var cerr error
	err := s.raw.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(sl.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		sl.free = append(sl.free, slot)
		s.slot = -1
		return false
	}
	sl.slots[slot] = s
	return true
}

// takeLocked removes s from the set; sl.mu is held.
func (sl *wsSleeper) takeLocked(s *objSocket) {
	// Control fails on a connection closed meanwhile, whose close took it out of the set.
	s.raw.Control(func(fd uintptr) {
		syscall.EpollCtl(sl.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	sl.slots[s.slot] = nil
	sl.free = append(sl.free, s.slot)
	s.slot = -1
}

// loop waits for readable sockets forever; with nothing asleep it is one parked goroutine.
func (sl *wsSleeper) loop() {
	var evs [128]syscall.EpollEvent
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		n, werr = syscall.EpollWait(int(fd), evs[:], 0)
		if werr == syscall.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	}
	var woken []*objSocket
	for {
		n, werr = 0, nil
		if err := sl.raw.Read(wait); err != nil || werr != nil {
			time.Sleep(10 * time.Millisecond) // out of resources: retry
		}
		sl.mu.Lock()
		for _, ev := range evs[:n] {
			if ev.Fd < 0 || int(ev.Fd) >= len(sl.slots) {
				continue
			}
			s := sl.slots[ev.Fd]
			if s == nil || s.sleepGen != uint32(ev.Pad) {
				continue // taken out after epoll reported it
			}
			sl.takeLocked(s)
			woken = append(woken, s)
		}
		sl.mu.Unlock()
		for i, s := range woken {
			go s.hub.readLoop(s)
			woken[i] = nil
		}
		woken = woken[:0]
	}
}

// sweepLoop wakes, once per wsSweep, the sleeping sockets that are idle past
// WebSocketIdleTimeout, that are closing, or whose connection ended: their reader then
// finds the timeout, the close or the error and ends them.
func (sl *wsSleeper) sweepLoop() {
	t := time.NewTicker(wsSweep)
	defer t.Stop()
	var woken []*objSocket
	for range t.C {
		now := int64(time.Since(clockBase))
		sl.mu.Lock()
		for _, s := range sl.slots {
			if s == nil {
				continue
			}
			c := s.c
			c.mu.Lock()
			due := c.closeSent || c.ended || now-c.active.Load() >= int64(WebSocketIdleTimeout)
			c.mu.Unlock()
			if due {
				sl.takeLocked(s)
				woken = append(woken, s)
			}
		}
		sl.mu.Unlock()
		for i, s := range woken {
			go s.hub.readLoop(s)
			woken[i] = nil
		}
		woken = woken[:0]
	}
}
