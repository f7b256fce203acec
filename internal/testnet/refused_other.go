//go:build !unix

// Package testnet holds network helpers for tests.
package testnet

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback TCP address nothing listens on (a closed listener's; on
// these systems another process may take the port meanwhile).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
