package server

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestPrefixConnHalfCloses: the h2c connection wrapper passes CloseWrite on, so h2's graceful
// close sends FIN, and the client reads end of file, not a reset, although it sent more
// than the server read (h2spec's "Sends a GOAWAY frame" failed on a reset now and then).
func TestPrefixConnHalfCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var c net.Conn = &prefixConn{Conn: raw}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("prefixConn has no CloseWrite: a graceful h2c close can only reset")
	}
	if _, err := client.Write([]byte("unread by the server")); err != nil {
		t.Fatal(err)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second)) // a failure guard
	if n, err := client.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v; want end of file", n, err)
	}
	// Half-closed, not closed: the client may still send.
	if _, err := client.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
}
