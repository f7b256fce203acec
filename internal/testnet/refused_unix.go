//go:build unix

// Package testnet holds network helpers for tests.
package testnet

import (
	"net"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback TCP address that refuses connections for the rest of the
// test. A port taken from a closed listener may be bound again by any other process or test
// running meanwhile (a test server, a container's published port), after which the address
// answers; here the port stays bound by a socket that never listens, so nothing else can
// take it and a connection to it is refused.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
}
