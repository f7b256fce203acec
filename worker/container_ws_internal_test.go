package worker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// TestContainerTunnelFields: a WebSocket handshake to a container carries no header field
// that could end the head early or smuggle a second request.
func TestContainerTunnelFields(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"Upgrade", true}, {"websocket", true}, {"a\r\nX-Injected: 1", false}, {"a\nb", false}, {"a\x00", false}, {"", false},
	} {
		if got := validField(c.s); got != c.want {
			t.Errorf("validField(%q) = %v, want %v", c.s, got, c.want)
		}
	}
	req := func(fields ...string) []byte {
		var e workerabi.Encoder
		e.Str("GET")
		e.Str("http://container/ws")
		e.Str("")
		e.U32(uint32(len(fields) / 2))
		for _, f := range fields {
			e.Str(f)
		}
		e.Bytes(nil)
		return e.B
	}
	if !isWebSocketRequest(req("upgrade", "WebSocket")) || isWebSocketRequest(req("Upgrade", "h2c")) || isWebSocketRequest(req()) {
		t.Error("isWebSocketRequest")
	}
	if i := indexPath("http://container/a/ws?x=1"); i < 0 || "http://container/a/ws?x=1"[i:] != "/a/ws?x=1" {
		t.Errorf("indexPath: %d", i)
	}
}

// TestContainerTunnelRequestLine: the method and target of a handshake to a container cannot
// end the request line early (a second request smuggled by the worker's URL).
func TestContainerTunnelRequestLine(t *testing.T) {
	for _, c := range []struct {
		m, target string
		want      bool
	}{
		{"GET", "/ws?x=1", true},
		{"GET /x HTTP/1.1\r\nX: 1", "/ws", false},
		{"GET", "/ws HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /admin", false},
		{"GET", "/a\x00", false},
		{"GET", "ws", false},
		{"", "/", false},
		{"G(T", "/", false},
	} {
		if got := validMethod(c.m) && validTarget(c.target); got != c.want {
			t.Errorf("method %q target %q: valid %v, want %v", c.m, c.target, got, c.want)
		}
	}
}

// TestContainerTunnelHeadLimit: a container answering a WebSocket handshake with a head
// without end gets an error once maxTunnelHead bytes are read, not Verge's memory; after a
// head within the limit, the bytes that follow are read without limit.
func TestContainerTunnelHeadLimit(t *testing.T) {
	endless := io.MultiReader(strings.NewReader("HTTP/1.1 101 Switching Protocols\r\n"), infiniteFields{})
	if _, _, err := readTunnelResponse(endless); !errors.Is(err, errTunnelHead) {
		t.Fatalf("endless head: err %v, want errTunnelHead", err)
	}
	tail := bytes.Repeat([]byte("x"), 2*maxTunnelHead)
	ok := io.MultiReader(strings.NewReader("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), bytes.NewReader(tail))
	resp, br, err := readTunnelResponse(ok)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("101: %v %v", resp, err)
	}
	got, err := io.ReadAll(br)
	if err != nil || len(got) != len(tail) {
		t.Fatalf("after the head: %d bytes, %v; want %d", len(got), err, len(tail))
	}
}

// infiniteFields yields header fields forever.
type infiniteFields struct{}

func (infiniteFields) Read(p []byte) (int, error) {
	const f = "X-Field: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	n := 0
	for n+len(f) <= len(p) {
		n += copy(p[n:], f)
	}
	if n == 0 {
		n = copy(p, "X")
	}
	return n, nil
}

// TestContainerTunnelIdle checks that a WebSocket joined to a container carries bytes both
// ways and is closed, releasing the container, once both sides stay silent for
// ContainerTunnelIdle.
func TestContainerTunnelIdle(t *testing.T) {
	old := ContainerTunnelIdle
	ContainerTunnelIdle = 50 * time.Millisecond
	t.Cleanup(func() { ContainerTunnelIdle = old })
	conn, container := net.Pipe()
	clientSide, client := net.Pipe()
	released := make(chan struct{})
	tun := &wsTunnel{conn: conn, br: bufio.NewReader(conn), release: func() { close(released) }}
	joined := make(chan struct{})
	go func() { tun.join(clientSide); close(joined) }()

	buf := make([]byte, 2)
	go client.Write([]byte("up"))
	if _, err := io.ReadFull(container, buf); err != nil || string(buf) != "up" {
		t.Fatalf("container read %q, %v", buf, err)
	}
	go container.Write([]byte("dn"))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "dn" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	// Both silent from here: the tunnel must end by itself.
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("a silent tunnel was not closed")
	}
	select {
	case <-released:
	default:
		t.Fatal("the container's hold was not released")
	}
	if _, err := client.Read(buf); err == nil {
		t.Fatal("the client's connection is still open")
	}
}
