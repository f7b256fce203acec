// Package wsproto is the server side of the WebSocket protocol (RFC 6455) as Verge's worker
// runtime speaks it: the opening handshake's checks and accept key, a frame reader that
// assembles messages from a client connection, and the encoding of server frames. It keeps
// no buffer between messages: a reader holds a 14-byte header array, and a message's payload
// is allocated when its frame arrives, so an idle connection costs only its struct.
package wsproto

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation = 0
	OpText         = 1
	OpBinary       = 2
	OpClose        = 8
	OpPing         = 9
	OpPong         = 10
)

// Close codes (RFC 6455 section 7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseNoStatus        = 1005 // never sent: a close frame without a code
	CloseAbnormal        = 1006 // never sent: the connection ended without a close frame
	CloseInvalidData     = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseInternalError   = 1011
	CloseTryAgainLater   = 1013
)

// MaxControlPayload is the largest payload of a control frame (RFC 6455 section 5.5).
const MaxControlPayload = 125

// readChunk is the most a frame's payload grows by per read.
const readChunk = 32 << 10

// MaxCloseReason is the longest close reason that fits a close frame.
const MaxCloseReason = MaxControlPayload - 2

// Error is a protocol violation by the peer: the connection is closed with Code.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("websocket: %s (close %d)", e.Reason, e.Code) }

// guid is the key suffix of RFC 6455 section 1.3.
const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(guid))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Header is what CheckRequest needs of a request's header: the values of a field.
type Header interface {
	Get(name string) string
}

// ErrNotWebSocket is a request that does not ask for a WebSocket at all (no Upgrade:
// websocket); CheckRequest's other errors describe a malformed WebSocket request.
var ErrNotWebSocket = errors.New("websocket: not a WebSocket upgrade request")

// IsUpgrade reports whether a request asks to switch to the WebSocket protocol.
func IsUpgrade(h Header) bool { return hasToken(h.Get("Upgrade"), "websocket") }

// CheckRequest validates an HTTP/1.1 opening handshake (RFC 6455 section 4.2.1) and returns
// the client's key.
func CheckRequest(method string, h Header) (string, error) {
	if !IsUpgrade(h) {
		return "", ErrNotWebSocket
	}
	if method != "GET" {
		return "", errors.New("websocket: upgrade request method is not GET")
	}
	if !hasToken(h.Get("Connection"), "upgrade") {
		return "", errors.New("websocket: Connection does not name upgrade")
	}
	if v := strings.TrimSpace(h.Get("Sec-WebSocket-Version")); v != "13" {
		return "", fmt.Errorf("websocket: unsupported Sec-WebSocket-Version %q (want 13)", v)
	}
	key := strings.TrimSpace(h.Get("Sec-WebSocket-Key"))
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", errors.New("websocket: Sec-WebSocket-Key is not 16 bytes in base64")
	}
	return key, nil
}

// hasToken reports whether the comma-separated list v holds tok, ignoring case.
func hasToken(v, tok string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// Reader reads messages from a client: frames must be masked, control frames short and
// unfragmented, text valid UTF-8, and a message at most Max bytes; a violation returns an
// *Error with the close code to send (1002, 1007, 1009). Control frames are returned as
// they arrive, also between the fragments of a data message.
type Reader struct {
	// R is the connection.
	R io.Reader
	// Max bounds a data message's assembled payload.
	Max int

	hdr     [14]byte
	partial []byte // the fragments of a data message so far
	partOp  byte   // its opcode; 0 when none is in progress
}

// Next returns the next complete message (OpText, OpBinary) or control frame (OpClose,
// OpPing, OpPong). The payload is the caller's. An I/O error is returned as it is.
func (r *Reader) Next() (op byte, payload []byte, err error) {
	for {
		fin, op, p, err := r.frame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case OpClose, OpPing, OpPong:
			if op == OpClose {
				if err := checkClose(p); err != nil {
					return 0, nil, err
				}
			}
			return op, p, nil
		case OpText, OpBinary:
			if r.partOp != 0 {
				return 0, nil, &Error{Code: CloseProtocolError, Reason: "new data frame inside a fragmented message"}
			}
			if fin {
				if op == OpText && !utf8.Valid(p) {
					return 0, nil, &Error{Code: CloseInvalidData, Reason: "text message is not valid UTF-8"}
				}
				return op, p, nil
			}
			r.partOp, r.partial = op, p
		case OpContinuation:
			if r.partOp == 0 {
				return 0, nil, &Error{Code: CloseProtocolError, Reason: "continuation frame without a message"}
			}
			if len(r.partial)+len(p) > r.Max {
				return 0, nil, &Error{Code: CloseTooBig, Reason: fmt.Sprintf("message exceeds %d bytes", r.Max)}
			}
			r.partial = append(r.partial, p...)
			if fin {
				op, p := r.partOp, r.partial
				r.partOp, r.partial = 0, nil
				if op == OpText && !utf8.Valid(p) {
					return 0, nil, &Error{Code: CloseInvalidData, Reason: "text message is not valid UTF-8"}
				}
				return op, p, nil
			}
		default:
			return 0, nil, &Error{Code: CloseProtocolError, Reason: fmt.Sprintf("unknown opcode %d", op)}
		}
	}
}

// frame reads one frame and unmasks its payload.
func (r *Reader) frame() (fin bool, op byte, payload []byte, err error) {
	h := r.hdr[:]
	if _, err := io.ReadFull(r.R, h[:2]); err != nil {
		return false, 0, nil, err
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[0]&0x70 != 0 {
		return false, 0, nil, &Error{Code: CloseProtocolError, Reason: "reserved bits set (no extension was negotiated)"}
	}
	if h[1]&0x80 == 0 {
		return false, 0, nil, &Error{Code: CloseProtocolError, Reason: "client frame is not masked"}
	}
	n := uint64(h[1] & 0x7f)
	ext := 0
	switch n {
	case 126:
		ext = 2
	case 127:
		ext = 8
	}
	if _, err := io.ReadFull(r.R, h[2:2+ext+4]); err != nil {
		return false, 0, nil, err
	}
	switch ext {
	case 2:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
	case 8:
		n = binary.BigEndian.Uint64(h[2:])
		if n>>63 != 0 {
			return false, 0, nil, &Error{Code: CloseProtocolError, Reason: "frame length has its top bit set"}
		}
	}
	var mask [4]byte
	copy(mask[:], h[2+ext:])
	if op >= OpClose {
		if !fin {
			return false, 0, nil, &Error{Code: CloseProtocolError, Reason: "fragmented control frame"}
		}
		if n > MaxControlPayload {
			return false, 0, nil, &Error{Code: CloseProtocolError, Reason: "control frame longer than 125 bytes"}
		}
	} else if n > uint64(r.Max) || (op == OpContinuation && uint64(len(r.partial))+n > uint64(r.Max)) {
		return false, 0, nil, &Error{Code: CloseTooBig, Reason: fmt.Sprintf("message exceeds %d bytes", r.Max)}
	}
	// The payload grows as it arrives, so that a peer announcing a large frame and sending
	// nothing holds no more than its first chunk.
	payload = make([]byte, 0, min(n, 4<<10))
	for rem := n; rem > 0; {
		k := int(min(rem, readChunk))
		payload = slices.Grow(payload, k)
		m, err := io.ReadFull(r.R, payload[len(payload):len(payload)+k])
		payload = payload[:len(payload)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, 0, nil, err
		}
		rem -= uint64(k)
	}
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	return fin, op, payload, nil
}

// checkClose validates a close frame's payload (RFC 6455 sections 5.5.1 and 7.4).
func checkClose(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return &Error{Code: CloseProtocolError, Reason: "close frame with a one-byte payload"}
	}
	code := int(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return &Error{Code: CloseProtocolError, Reason: fmt.Sprintf("invalid close code %d", code)}
	}
	if !utf8.Valid(p[2:]) {
		return &Error{Code: CloseInvalidData, Reason: "close reason is not valid UTF-8"}
	}
	return nil
}

// ValidCloseCode reports whether code may appear in a close frame.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ParseClose returns a close frame's code and reason: CloseNoStatus and "" when it has none.
// The payload must have passed the Reader's checks.
func ParseClose(p []byte) (int, string) {
	if len(p) < 2 {
		return CloseNoStatus, ""
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:])
}

// ClosePayload encodes a close frame's payload; the reason is cut to MaxCloseReason bytes
// (at a rune boundary). CloseNoStatus gives an empty payload.
func ClosePayload(code int, reason string) []byte {
	if code == CloseNoStatus || code == 0 {
		return nil
	}
	for len(reason) > MaxCloseReason {
		_, n := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-n]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	return append(p, reason...)
}

// AppendFrame appends an unmasked, final server frame of op carrying payload.
func AppendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}
