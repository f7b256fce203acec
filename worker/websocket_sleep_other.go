//go:build !linux

package worker

// wsSleepers is a stand-in: outside Linux every socket's reader waits on a goroutine.
var wsSleepers wsSleeper

type wsSleeper struct{}

func (sl *wsSleeper) sleep(h *wsHub, s *objSocket) bool { return false }
