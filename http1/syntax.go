package http1

import "strconv"

// protoError is a protocol violation found while parsing: the status a server answers with and
// a short reason. The values are package-level so that reporting one does not allocate.
type protoError struct {
	status int
	msg    string
}

func (e *protoError) Error() string { return "http1: " + e.msg }

func newProtoError(status int, msg string) *protoError { return &protoError{status, msg} }

// Request parse errors. The status is what the server sends before closing the connection.
var (
	errRequestLineTooLong = newProtoError(414, "request line too long")
	errHeadTooLarge       = newProtoError(431, "request head too large")
	errTooManyHeaders     = newProtoError(431, "too many header fields")
	errBareLF             = newProtoError(400, "line not terminated by CRLF")
	errBareCR             = newProtoError(400, "bare CR")
	errBadRequestLine     = newProtoError(400, "malformed request line")
	errBadMethod          = newProtoError(400, "invalid method")
	errBadTarget          = newProtoError(400, "invalid request target")
	errBadVersion         = newProtoError(400, "malformed HTTP version")
	errVersionUnsupported = newProtoError(505, "unsupported HTTP version")
	errObsFold            = newProtoError(400, "obsolete line folding")
	errBadFieldName       = newProtoError(400, "invalid header field name")
	errSpaceBeforeColon   = newProtoError(400, "whitespace between field name and colon")
	errBadFieldValue      = newProtoError(400, "invalid header field value")
	errMissingHost        = newProtoError(400, "missing Host header")
	errMultipleHost       = newProtoError(400, "multiple Host headers")
	errBadHost            = newProtoError(400, "invalid Host header")
	errBadContentLength   = newProtoError(400, "invalid Content-Length")
	errMultipleCL         = newProtoError(400, "multiple Content-Length values")
	errCLAndTE            = newProtoError(400, "both Content-Length and Transfer-Encoding")
	errBadTE              = newProtoError(400, "malformed Transfer-Encoding")
	errChunkedNotLast     = newProtoError(400, "chunked is not the final transfer coding")
	errUnknownTE          = newProtoError(501, "unsupported transfer coding")
	errTEInHTTP10         = newProtoError(400, "Transfer-Encoding in an HTTP/1.0 message")
	errExpectation        = newProtoError(417, "unsupported expectation")
	errBodyTooLarge       = newProtoError(413, "request body too large")
)

// Body and response parse errors.
var (
	errBadChunkSize      = newProtoError(400, "invalid chunk size")
	errChunkExtTooLong   = newProtoError(400, "chunk extension too long")
	errBadChunkExt       = newProtoError(400, "invalid chunk extension")
	errMissingChunkCRLF  = newProtoError(400, "chunk data not followed by CRLF")
	errTrailerTooLarge   = newProtoError(431, "trailer section too large")
	errBadStatusLine     = newProtoError(502, "malformed status line")
	errResponseTooLarge  = newProtoError(502, "response head too large")
	errTooManyRespFields = newProtoError(502, "too many header fields in response")
	errNotHTTPResponse   = newProtoError(502, "malformed response from origin: not an HTTP/1.x status line")
	errMalformedResponse = newProtoError(502, "malformed response from origin: bad line framing")
	errTooManyInterim    = newProtoError(502, "too many interim responses")
	errUnsolicitedData   = newProtoError(502, "data after response")
	errLineTooLong       = newProtoError(400, "line too long")
	errUnexpectedEOFHead = newProtoError(400, "connection closed inside message head")
)

// tchar per RFC 9110 section 5.6.2.
var isTchar = [256]bool{}

// isVchar accepts field-vchar, SP and HTAB (RFC 9110 section 5.5): VCHAR and obs-text.
var isFieldByte = [256]bool{}

// isTargetByte accepts the bytes of a request-target: the visible US-ASCII characters RFC 3986
// allows in a URI (section 2), without '#' (RFC 9112 section 3.2).
var isTargetByte = [256]bool{}

// isHostByte accepts the bytes of a uri-host with port (RFC 3986 section 3.2.2).
var isHostByte = [256]bool{}

func init() {
	for c := '0'; c <= '9'; c++ {
		isTchar[c] = true
		isHostByte[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		isTchar[c] = true
		isTchar[c-'a'+'A'] = true
		isHostByte[c] = true
		isHostByte[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		isTchar[c] = true
	}
	for c := 0x21; c < 0x7f; c++ {
		isTargetByte[c] = true
	}
	for _, c := range "#\"<>\\^`{|}" {
		isTargetByte[c] = false
	}
	for c := 0x20; c < 0x100; c++ {
		isFieldByte[c] = true
	}
	isFieldByte[0x7f] = false
	isFieldByte['\t'] = true
	for _, c := range "-._~%!$&'()*+,;=:[]" {
		isHostByte[c] = true
	}
}

func validToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if !isTchar[c] {
			return false
		}
	}
	return true
}

func validTokenString(s string) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar[s[i]] {
			return false
		}
	}
	return true
}

// validFieldValueString reports whether s may be written as a field value: no CR, LF, NUL or
// other control bytes but HTAB, which would let a value inject fields or messages.
func validFieldValueString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isFieldByte[s[i]] {
			return false
		}
	}
	return true
}

func validHostString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHostByte[s[i]] {
			return false
		}
	}
	return true
}

func validHost(s []byte) bool {
	for _, c := range s {
		if !isHostByte[c] {
			return false
		}
	}
	return true
}

// parseContentLength parses 1*DIGIT (RFC 9110 section 8.6): no sign, no spaces, no list.
func parseContentLength(s []byte) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// equalFoldBytes compares b with the lower-case ASCII string s, ignoring ASCII case in b.
func equalFoldBytes(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// appendInt appends the decimal form of n without allocating.
func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// appendHex appends the lower-case hexadecimal form of n.
func appendHex(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 16) }
