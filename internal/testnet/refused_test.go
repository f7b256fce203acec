package testnet

import (
	"net"
	"testing"
)

func TestRefusedAddr(t *testing.T) {
	a := RefusedAddr(t)
	for range 3 {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Fatalf("%s accepted a connection", a)
		}
	}
}
