//go:build !linux

package http1

// Without epoll, a hibernating connection waits on a goroutine of its own (connLife.sleep).
func hibernateConn(*connLife) bool { return false }

func unhibernate(*connLife) bool { return false }

func drainHibernated(*connLife) bool { return false }
