package worker

import (
	"testing"

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
