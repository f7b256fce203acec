package h2

import (
	"encoding/binary"
	"strconv"
)

// The server's own HTTP/2 framing (RFC 9113 sections 4 and 6): frames are parsed in place
// from the connection's read buffer and appended to its write buffer.

// Frame types.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Settings identifiers (RFC 9113 section 6.5.2).
const (
	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6
)

// errCode is an HTTP/2 error code (RFC 9113 section 7).
type errCode uint32

// The error codes the server sends or acts on; String names them all.
const (
	codeNo              errCode = 0x0
	codeProtocol        errCode = 0x1
	codeInternal        errCode = 0x2
	codeFlowControl     errCode = 0x3
	codeStreamClosed    errCode = 0x5
	codeFrameSize       errCode = 0x6
	codeRefusedStream   errCode = 0x7
	codeCancel          errCode = 0x8
	codeCompression     errCode = 0x9
	codeEnhanceYourCalm errCode = 0xb
)

var codeNames = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
	"CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

func (c errCode) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "unknown error code 0x" + strconv.FormatUint(uint64(c), 16)
}

const (
	frameHeaderLen  = 9
	clientPreface   = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	initialWindow   = 65535
	maxWindow       = 1<<31 - 1
	minMaxFrameSize = 1 << 14
	maxMaxFrameSize = 1<<24 - 1
	// headerTableSize is the HPACK dynamic table size of the request decoder: the
	// protocol's initial value, which the server therefore does not advertise.
	headerTableSize = 4096
)

// appendFrameHeader appends a frame header.
func appendFrameHeader(b []byte, length int, typ, flags byte, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendRSTStream(b []byte, id uint32, code errCode) []byte {
	b = appendFrameHeader(b, 4, frameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendWindowUpdate(b []byte, id, inc uint32) []byte {
	b = appendFrameHeader(b, 4, frameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(b, inc)
}

func appendGoAway(b []byte, last uint32, code errCode) []byte {
	b = appendFrameHeader(b, 8, frameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, last)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendPing(b []byte, ack bool, data []byte) []byte {
	var flags byte
	if ack {
		flags = flagAck
	}
	b = appendFrameHeader(b, 8, framePing, flags, 0)
	return append(b, data[:8]...)
}

func appendSetting(b []byte, id uint16, v uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, id)
	return binary.BigEndian.AppendUint32(b, v)
}

// appendHeaderBlock appends block as one HEADERS frame, followed by CONTINUATION frames when
// it exceeds maxFrame. END_STREAM goes on the HEADERS frame.
func appendHeaderBlock(b []byte, id uint32, block []byte, endStream bool, maxFrame int) []byte {
	var flags byte
	if endStream {
		flags = flagEndStream
	}
	typ := byte(frameHeaders)
	for {
		n := min(len(block), maxFrame)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		b = appendFrameHeader(b, n, typ, f, id)
		b = append(b, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return b
		}
		typ, flags = frameContinuation, 0
	}
}
