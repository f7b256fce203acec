package wsproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

// clientFrame encodes a frame as a client sends it (masked unless unmasked is set).
func clientFrame(fin bool, op byte, payload []byte, unmasked bool) []byte {
	b := byte(op)
	if fin {
		b |= 0x80
	}
	out := []byte{b}
	mbit := byte(0x80)
	if unmasked {
		mbit = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126, byte(n>>8), byte(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i&3])
	}
	return out
}

func TestAcceptKey(t *testing.T) {
	// RFC 6455 section 1.3's example.
	if got, want := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Fatalf("AcceptKey = %q, want %q", got, want)
	}
}

type hdr map[string]string

func (h hdr) Get(n string) string { return h[n] }

func TestCheckRequest(t *testing.T) {
	good := hdr{"Upgrade": "websocket", "Connection": "keep-alive, Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	if key, err := CheckRequest("GET", good); err != nil || key != "dGhlIHNhbXBsZSBub25jZQ==" {
		t.Fatalf("good request: %q, %v", key, err)
	}
	if _, err := CheckRequest("GET", hdr{}); !errors.Is(err, ErrNotWebSocket) {
		t.Fatalf("plain request: %v, want ErrNotWebSocket", err)
	}
	bad := []hdr{
		{"Upgrade": "websocket", "Connection": "close", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
		{"Upgrade": "websocket", "Connection": "upgrade", "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
		{"Upgrade": "websocket", "Connection": "upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "c2hvcnQ="},
	}
	for i, h := range bad {
		if _, err := CheckRequest("GET", h); err == nil || errors.Is(err, ErrNotWebSocket) {
			t.Errorf("bad request %d: err = %v, want a handshake error", i, err)
		}
	}
	if _, err := CheckRequest("POST", good); err == nil {
		t.Error("POST upgrade accepted")
	}
}

func TestReaderMessages(t *testing.T) {
	var in []byte
	in = append(in, clientFrame(true, OpText, []byte("hello"), false)...)
	in = append(in, clientFrame(false, OpBinary, []byte("ab"), false)...)
	in = append(in, clientFrame(true, OpPing, []byte("p"), false)...) // between fragments
	in = append(in, clientFrame(false, OpContinuation, []byte("cd"), false)...)
	in = append(in, clientFrame(true, OpContinuation, bytes.Repeat([]byte("e"), 70000), false)...)
	in = append(in, clientFrame(true, OpClose, ClosePayload(CloseNormal, "bye"), false)...)
	r := &Reader{R: bytes.NewReader(in), Max: 1 << 20}
	want := []struct {
		op  byte
		len int
	}{{OpText, 5}, {OpPing, 1}, {OpBinary, 4 + 70000}, {OpClose, 5}}
	for i, w := range want {
		op, p, err := r.Next()
		if err != nil || op != w.op || len(p) != w.len {
			t.Fatalf("message %d: op %d len %d err %v, want op %d len %d", i, op, len(p), err, w.op, w.len)
		}
		if op == OpClose {
			if c, reason := ParseClose(p); c != CloseNormal || reason != "bye" {
				t.Fatalf("close = %d %q", c, reason)
			}
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("at the end: %v, want EOF", err)
	}
}

// TestReaderViolations are the attacks a client can make on the framing, with the close code
// each must get.
func TestReaderViolations(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		code int
	}{
		{"unmasked", clientFrame(true, OpText, []byte("x"), true), CloseProtocolError},
		{"oversized frame", clientFrame(true, OpBinary, make([]byte, 2000), false), CloseTooBig},
		{"oversized fragments", append(clientFrame(false, OpBinary, make([]byte, 600), false), clientFrame(true, OpContinuation, make([]byte, 600), false)...), CloseTooBig},
		{"bad utf-8", clientFrame(true, OpText, []byte{0xff, 0xfe}, false), CloseInvalidData},
		{"bad utf-8 fragmented", append(clientFrame(false, OpText, []byte{0xe2, 0x82}, false), clientFrame(true, OpContinuation, []byte{0x41}, false)...), CloseInvalidData},
		{"fragmented control", clientFrame(false, OpPing, []byte("x"), false), CloseProtocolError},
		{"long control", clientFrame(true, OpPing, make([]byte, 126), false), CloseProtocolError},
		{"reserved bits", append([]byte{0xC1}, clientFrame(true, OpText, nil, false)[1:]...), CloseProtocolError},
		{"unknown opcode", clientFrame(true, 3, nil, false), CloseProtocolError},
		{"lone continuation", clientFrame(true, OpContinuation, []byte("x"), false), CloseProtocolError},
		{"data inside fragments", append(clientFrame(false, OpText, []byte("a"), false), clientFrame(true, OpText, []byte("b"), false)...), CloseProtocolError},
		{"close code 1005", clientFrame(true, OpClose, []byte{0x03, 0xed}, false), CloseProtocolError},
		{"close one byte", clientFrame(true, OpClose, []byte{0x03}, false), CloseProtocolError},
		{"close bad utf-8", clientFrame(true, OpClose, []byte{0x03, 0xe8, 0xff}, false), CloseInvalidData},
	}
	for _, c := range cases {
		r := &Reader{R: bytes.NewReader(c.in), Max: 1024}
		_, _, err := r.Next()
		var we *Error
		if !errors.As(err, &we) || we.Code != c.code {
			t.Errorf("%s: err = %v, want close code %d", c.name, err, c.code)
		}
	}
}

// TestReaderLargeAnnouncedFrame: a frame announcing more than it sends holds little memory
// and ends with an unexpected EOF.
func TestReaderLargeAnnouncedFrame(t *testing.T) {
	f := clientFrame(true, OpBinary, make([]byte, 100000), false)
	r := &Reader{R: bytes.NewReader(f[:100]), Max: 1 << 20}
	if _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := AppendFrame(nil, OpBinary, make([]byte, n))
		// Read it back as if masked by a zero mask: insert the mask bit and key.
		hl := 2
		if n >= 126 {
			hl = 4
		}
		if n > 65535 {
			hl = 10
		}
		m := append([]byte{}, f[:hl]...)
		m[1] |= 0x80
		m = append(m, 0, 0, 0, 0)
		m = append(m, f[hl:]...)
		r := &Reader{R: bytes.NewReader(m), Max: 1 << 20}
		op, p, err := r.Next()
		if err != nil || op != OpBinary || len(p) != n {
			t.Fatalf("n=%d: op %d len %d err %v", n, op, len(p), err)
		}
	}
	if p := ClosePayload(CloseNormal, string(bytes.Repeat([]byte("é"), 100))); len(p) > MaxControlPayload {
		t.Fatalf("close payload %d bytes", len(p))
	}
}

func FuzzReader(f *testing.F) {
	f.Add(clientFrame(true, OpText, []byte("hi"), false))
	f.Add(append(clientFrame(false, OpText, []byte("a"), false), clientFrame(true, OpContinuation, []byte("b"), false)...))
	f.Add(clientFrame(true, OpClose, ClosePayload(1000, "x"), false))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &Reader{R: bytes.NewReader(in), Max: 4096}
		for range 64 {
			op, p, err := r.Next()
			if err != nil {
				return
			}
			if op == OpText && !utf8.Valid(p) || len(p) > 4096 {
				t.Fatalf("bad message op %d len %d", op, len(p))
			}
		}
	})
}
