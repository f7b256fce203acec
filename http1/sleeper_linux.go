//go:build linux

package http1

import (
	"container/heap"
	"os"
	"sync"
	"syscall"
	"time"
)

// sleepers holds the hibernating connections of every Server in the process.
var sleepers sleeper

// sleeper watches hibernating connections for readability in one epoll set, waited on by one
// goroutine through the runtime's poller (the epoll descriptor is itself pollable). A
// connection in it has no goroutine and no stack: what it costs is its connLife and the
// runtime's socket state. Idle deadlines are kept in a heap and enforced with the epoll
// file's read deadline.
type sleeper struct {
	once sync.Once
	err  error // setup failed: connections hibernate on a goroutine each instead
	epfd int
	ep   *os.File
	raw  syscall.RawConn

	mu    sync.Mutex
	slots []*connLife // indexed by connLife.slot; nil is free
	free  []int32
	gen   uint32
	due   dueHeap   // sleeping connections with an idle deadline, earliest first
	armed time.Time // the deadline set on ep (zero: none)

	work chan *connLife // woken connections for parked workers (unbuffered)
}

func (sl *sleeper) init() {
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
	sl.work = make(chan *connLife)
	sl.ep = os.NewFile(uintptr(fd), "http1-sleeper")
	// A deadline only works on a descriptor the runtime's poller took: this tells.
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
}

// hibernate hands l, whose connection is idle and has no goroutine left, to the sleeper. It
// reports false when the sleeper cannot take it; the caller then waits on a goroutine.
func hibernateConn(l *connLife) bool {
	sl := &sleepers
	sl.once.Do(sl.init)
	if sl.err != nil {
		return false
	}
	sl.mu.Lock()
	var slot int32
	if n := len(sl.free); n > 0 {
		slot = sl.free[n-1]
		sl.free = sl.free[:n-1]
	} else {
		slot = int32(len(sl.slots))
		sl.slots = append(sl.slots, nil)
	}
	sl.gen++
	l.slot, l.sleepGen = slot, sl.gen
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: slot, Pad: int32(sl.gen)}
	var cerr error
	err := l.raw.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(sl.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		sl.free = append(sl.free, slot)
		l.slot = -1
		sl.mu.Unlock()
		return false
	}
	sl.slots[slot] = l
	l.dueIdx = -1
	if !l.idleUntil.IsZero() {
		heap.Push(&sl.due, l)
		if sl.armed.IsZero() || l.idleUntil.Before(sl.armed) {
			sl.armed = l.idleUntil
			sl.ep.SetReadDeadline(l.idleUntil)
		}
	}
	sl.mu.Unlock()
	// A drain that started before l was in the set did not find it there.
	if l.shutdown.Load() {
		if l.grace > 0 {
			drainHibernated(l)
		} else if unhibernate(l) {
			l.end(false)
		}
	}
	return true
}

// drainHibernated brings l's idle deadline in the sleeper forward to the drain's, when l is
// there, and reports whether it was. Until then a request that arrives is served (with
// "Connection: close"), like on any other draining connection.
func drainHibernated(l *connLife) bool {
	sl := &sleepers
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if !sl.holdsLocked(l) {
		return false
	}
	d := epoch.Add(time.Duration(l.drainBy))
	if !l.idleUntil.IsZero() && l.idleUntil.Before(d) {
		d = l.idleUntil // the idle timeout comes first
	}
	l.idleUntil = d
	if l.dueIdx >= 0 {
		heap.Fix(&sl.due, int(l.dueIdx))
	} else {
		heap.Push(&sl.due, l)
	}
	if sl.armed.IsZero() || d.Before(sl.armed) {
		sl.armed = d
		sl.ep.SetReadDeadline(d)
	}
	return true
}

// unhibernate takes l out of the sleeper. It reports whether l was there: whoever takes a
// connection out owns it from then on.
func unhibernate(l *connLife) bool {
	sl := &sleepers
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.removeLocked(l)
}

// holdsLocked reports whether l is in the sleeper.
func (sl *sleeper) holdsLocked(l *connLife) bool {
	return l.slot >= 0 && int(l.slot) < len(sl.slots) && sl.slots[l.slot] == l
}

func (sl *sleeper) removeLocked(l *connLife) bool {
	if !sl.holdsLocked(l) {
		return false
	}
	// Control fails on a connection closed meanwhile, whose close already took it out of
	// the epoll set.
	l.raw.Control(func(fd uintptr) {
		syscall.EpollCtl(sl.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	sl.slots[l.slot] = nil
	sl.free = append(sl.free, l.slot)
	l.slot = -1
	if l.dueIdx >= 0 {
		heap.Remove(&sl.due, int(l.dueIdx))
	}
	return true
}

// loop waits for readable connections and expired idle deadlines, forever: the sleeper is
// shared by every Server of the process and costs one parked goroutine when nothing sleeps.
func (sl *sleeper) loop() {
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
	var woken, expired []*connLife
	for {
		n, werr = 0, nil
		if err := sl.raw.Read(wait); err != nil && !os.IsTimeout(err) {
			// The epoll file cannot fail short of the process running out of resources;
			// keep serving what is asleep by retrying after a pause.
			time.Sleep(100 * time.Millisecond)
		}
		if werr != nil {
			time.Sleep(10 * time.Millisecond)
		}
		sl.mu.Lock()
		for _, ev := range evs[:n] {
			if ev.Fd < 0 || int(ev.Fd) >= len(sl.slots) {
				continue
			}
			l := sl.slots[ev.Fd]
			if l == nil || l.sleepGen != uint32(ev.Pad) {
				continue // taken out after epoll reported it
			}
			sl.removeLocked(l)
			woken = append(woken, l)
		}
		now := time.Now()
		for len(sl.due) > 0 && !sl.due[0].idleUntil.After(now) {
			l := sl.due[0]
			sl.removeLocked(l)
			expired = append(expired, l)
		}
		var next time.Time
		if len(sl.due) > 0 {
			next = sl.due[0].idleUntil
		}
		if !next.Equal(sl.armed) {
			sl.armed = next
			sl.ep.SetReadDeadline(next)
		}
		sl.mu.Unlock()
		for i, l := range woken {
			sl.wake(l)
			woken[i] = nil
		}
		for i, l := range expired {
			if l.shutdown.Load() && l.grace > 0 && l.pending() {
				// A draining connection's request came with its deadline: serve it.
				sl.wake(l)
			} else {
				l.end(false)
			}
			expired[i] = nil
		}
		woken, expired = woken[:0], expired[:0]
	}
}

// workerIdle is how long a goroutine that served woken connections waits for another before
// it exits and frees its stack.
const workerIdle = 5 * time.Second

// wake hands a readable connection to a parked worker goroutine, or starts one. A worker keeps
// the stack its earlier requests grew: a fresh goroutine would grow its minimal stack again,
// copying it several times, which cost a woken connection's first request about 40µs.
func (sl *sleeper) wake(l *connLife) {
	select {
	case sl.work <- l:
	default:
		go sl.worker(l)
	}
}

// worker serves woken connections, each until it ends or hibernates again.
func (sl *sleeper) worker(l *connLife) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		l.resume()
		t.Reset(workerIdle)
		select {
		case l = <-sl.work:
		case <-t.C:
			return
		}
	}
}

// dueHeap orders sleeping connections by idle deadline.
type dueHeap []*connLife

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].idleUntil.Before(h[j].idleUntil) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].dueIdx, h[j].dueIdx = int32(i), int32(j)
}
func (h *dueHeap) Push(x any) {
	l := x.(*connLife)
	l.dueIdx = int32(len(*h))
	*h = append(*h, l)
}
func (h *dueHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.dueIdx = -1
	return l
}
