package http1

import (
	"bytes"
	"unsafe"

	"github.com/verge-edge/verge/message"
)

// bstr returns a string sharing b's memory. The string is valid while b is not overwritten;
// see the package comment for the lifetime rules.
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// headScanner finds the end of a message head as bytes arrive, enforcing the size limits and
// the CRLF line endings before the head is parsed (RFC 9112 section 2.2). Positions are
// relative to the first byte of the head.
type headScanner struct {
	pos       int // next byte to look at
	lineStart int // first byte of the current line
	skip      int // bytes of empty lines before the start line
	lines     int // field lines seen
	started   bool
}

// maxLeadingEmptyLines bounds the empty lines ignored before a start line (RFC 9112 section 2.2
// asks servers to ignore at least one).
const maxLeadingEmptyLines = 4

// scan looks for the end of the head in data, which holds every byte received so far. It
// returns the head's length (leading empty lines included) once the empty line that ends it is
// in data, 0 while more bytes are needed, or a protocol error.
func (s *headScanner) scan(data []byte, maxLine, maxHead, maxFields int) (int, *protoError) {
	for {
		i := bytes.IndexByte(data[s.pos:], '\n')
		if i < 0 {
			s.pos = len(data)
			if !s.started && len(data)-s.lineStart > maxLine+1 {
				return 0, errRequestLineTooLong
			}
			if len(data)-s.skip > maxHead {
				return 0, errHeadTooLarge
			}
			return 0, nil
		}
		lf := s.pos + i
		s.pos = lf + 1
		if lf == 0 || data[lf-1] != '\r' || lf-1 < s.lineStart {
			return 0, errBareLF
		}
		n := lf - 1 - s.lineStart // line length without CRLF
		switch {
		case !s.started && n == 0:
			if s.lineStart/2 >= maxLeadingEmptyLines {
				return 0, errBadRequestLine
			}
			s.skip = s.pos
		case !s.started:
			if n > maxLine {
				return 0, errRequestLineTooLong
			}
			s.started = true
		case n == 0:
			if s.pos-s.skip > maxHead {
				return 0, errHeadTooLarge
			}
			return s.pos, nil
		default:
			s.lines++
			if s.lines > maxFields {
				return 0, errTooManyHeaders
			}
		}
		if s.pos-s.skip > maxHead {
			return 0, errHeadTooLarge
		}
		s.lineStart = s.pos
	}
}

// nextLine returns the line starting at b[i:] without its CRLF and the index after the CRLF.
func nextLine(b []byte, i int) (line []byte, next int, err *protoError) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return nil, 0, errBareLF
	}
	end := i + j
	if end == i || b[end-1] != '\r' {
		return nil, 0, errBareLF
	}
	line = b[i : end-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, errBareCR
	}
	return line, end + 1, nil
}

// parseFieldLine splits a field line (RFC 9112 section 5) into name and value, the value
// without leading and trailing whitespace.
func parseFieldLine(line []byte) (name, value []byte, err *protoError) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, errObsFold // RFC 9112 section 5.2
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, errBadFieldName
	}
	name = line[:colon]
	if c := name[len(name)-1]; c == ' ' || c == '\t' {
		return nil, nil, errSpaceBeforeColon // RFC 9112 section 5.1
	}
	if !validToken(name) {
		return nil, nil, errBadFieldName
	}
	value = trimOWS(line[colon+1:])
	for _, c := range value {
		if !isFieldByte[c] {
			return nil, nil, errBadFieldValue
		}
	}
	return name, value, nil
}

// framing collects what the fields of a head say about the message.
type framing struct {
	contentLength int64
	hasCL         bool
	hasTE         bool
	chunked       bool
	teErr         *protoError
	teValue       []byte // the Transfer-Encoding field's value
	connClose     bool
	connKeepAlive bool
	connUpgrade   bool
	expect100     bool
	expectOther   bool
	hosts         int
	host          []byte
}

func (f *framing) reset() { *f = framing{} }

// field inspects one field and reports whether it is a framing field (Host, Content-Length,
// Transfer-Encoding) that must not be copied into the message's Header.
func (f *framing) field(name, value []byte) (framingField bool, err *protoError) {
	switch len(name) {
	case 4:
		if equalFoldBytes(name, "host") {
			f.hosts++
			f.host = value
			return true, nil
		}
	case 6:
		if equalFoldBytes(name, "expect") {
			if equalFoldBytes(value, "100-continue") {
				f.expect100 = true
			} else {
				f.expectOther = true
			}
		}
	case 10:
		if equalFoldBytes(name, "connection") {
			v := bstr(value)
			f.connClose = f.connClose || message.ContainsToken(v, "close")
			f.connKeepAlive = f.connKeepAlive || message.ContainsToken(v, "keep-alive")
			f.connUpgrade = f.connUpgrade || message.ContainsToken(v, "upgrade")
		}
	case 14:
		if equalFoldBytes(name, "content-length") {
			if f.hasCL {
				return true, errMultipleCL
			}
			n, ok := parseContentLength(value)
			if !ok {
				return true, errBadContentLength
			}
			f.hasCL, f.contentLength = true, n
			return true, nil
		}
	case 17:
		if equalFoldBytes(name, "transfer-encoding") {
			if f.hasTE {
				return true, errBadTE
			}
			f.hasTE, f.teValue = true, value
			f.chunked, f.teErr = parseTransferEncoding(value)
			return true, nil
		}
	}
	return false, nil
}

// parseTransferEncoding accepts exactly one transfer coding, "chunked" (RFC 9112 section 6.1).
// A list whose final coding is not chunked is a 400, other codings are a 501, and anything that
// is not a well-formed list of tokens is a 400.
func parseTransferEncoding(v []byte) (chunked bool, err *protoError) {
	n, chunkedAt, unknown := 0, -1, false
	for len(v) > 0 || n == 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
			if len(v) == 0 {
				return false, errBadTE // trailing comma
			}
		} else {
			elem, v = v, nil
		}
		elem = trimOWS(elem)
		if len(elem) == 0 {
			return false, errBadTE
		}
		if equalFoldBytes(elem, "chunked") {
			if chunkedAt >= 0 {
				return false, errBadTE
			}
			chunkedAt = n
		} else {
			name := elem
			if i := bytes.IndexByte(elem, ';'); i >= 0 {
				name = trimOWS(elem[:i])
			}
			if !validToken(name) {
				return false, errBadTE
			}
			unknown = true
		}
		n++
	}
	switch {
	case chunkedAt >= 0 && chunkedAt != n-1:
		return false, errChunkedNotLast
	case unknown:
		return false, errUnknownTE
	}
	return true, nil
}

// responseCodings splits a response's well-formed Transfer-Encoding value that names codings
// besides chunked (parseTransferEncoding reported errUnknownTE or errChunkedNotLast) into the
// codings the body still carries and whether chunked is the final one, which then delimits
// the body (RFC 9112 section 6.3, item 4).
func responseCodings(v []byte) (codings []byte, chunkedLast bool) {
	v = trimOWS(v)
	i := bytes.LastIndexByte(v, ',')
	if i >= 0 && equalFoldBytes(trimOWS(v[i+1:]), "chunked") {
		return trimOWS(v[:i]), true
	}
	return v, false
}

// reqHead is what parsing a request head learned beyond the message.Request fields.
type reqHead struct {
	framing
	http10 bool
}

// parseRequestHead parses a complete request head (request line, fields, empty line) into req.
// Strings in req alias head.
func parseRequestHead(head []byte, req *message.Request, rh *reqHead, lim *Limits) *protoError {
	rh.framing.reset()
	line, i, err := nextLine(head, 0)
	if err != nil {
		return err
	}
	if len(line) > lim.MaxRequestLine {
		return errRequestLineTooLong
	}
	if err := parseRequestLine(line, req, rh); err != nil {
		return err
	}
	authorityFromTarget := req.Authority != ""
	fields := 0
	for {
		line, next, err := nextLine(head, i)
		if err != nil {
			return err
		}
		i = next
		if len(line) == 0 {
			break
		}
		name, value, err := parseFieldLine(line)
		if err != nil {
			return err
		}
		if fields++; fields > lim.MaxHeaders {
			return errTooManyHeaders
		}
		skip, err := rh.field(name, value)
		if err != nil {
			return err
		}
		if !skip {
			req.Header.Add(bstr(name), bstr(value))
		}
	}
	if i > lim.MaxHeaderBytes {
		return errHeadTooLarge
	}
	return rh.finishRequest(req, lim, authorityFromTarget)
}

// finishRequest applies the message-level rules of RFC 9112 sections 3.2 and 6.
func (rh *reqHead) finishRequest(req *message.Request, lim *Limits, authorityFromTarget bool) *protoError {
	if rh.http10 {
		// An HTTP/1.0 request's expectations are ignored (RFC 9110 section 10.1.1).
		rh.expect100, rh.expectOther = false, false
	}
	switch {
	case rh.hosts > 1:
		return errMultipleHost
	case rh.hosts == 0 && !rh.http10:
		return errMissingHost
	case rh.hosts == 1 && !validHost(rh.host):
		return errBadHost
	case rh.hasTE && rh.http10:
		return errTEInHTTP10 // RFC 9112 section 6.1
	case rh.hasTE && rh.teErr != nil:
		return rh.teErr
	case rh.hasTE && rh.hasCL:
		return errCLAndTE // RFC 9112 section 6.3, item 3
	case rh.expectOther:
		return errExpectation // RFC 9110 section 10.1.1
	}
	if !authorityFromTarget {
		req.Authority = bstr(rh.host)
	}
	switch {
	case rh.chunked:
		req.ContentLength = -1
	case rh.hasCL:
		if lim.MaxBodySize > 0 && rh.contentLength > lim.MaxBodySize {
			return errBodyTooLarge
		}
		req.ContentLength = rh.contentLength
	default:
		req.ContentLength = 0
	}
	return nil
}

// parseRequestLine parses method SP request-target SP HTTP-version (RFC 9112 section 3).
func parseRequestLine(line []byte, req *message.Request, rh *reqHead) *protoError {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return errBadRequestLine
	}
	method := line[:sp1]
	if !validToken(method) {
		return errBadMethod
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errBadRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9' {
		return errBadVersion
	}
	switch string(version[5:]) {
	case "1.1":
		req.Proto, rh.http10 = message.HTTP11, false
	case "1.0":
		req.Proto, rh.http10 = message.HTTP10, true
	default:
		return errVersionUnsupported // RFC 9110 section 15.6.6
	}
	req.Method = internMethod(method)
	for _, c := range target {
		if !isTargetByte[c] {
			return errBadTarget
		}
	}
	return parseTarget(target, req)
}

// parseTarget classifies the request-target (RFC 9112 section 3.2) and sets Target, and
// Authority for the absolute form.
func parseTarget(t []byte, req *message.Request) *protoError {
	switch {
	case req.Method == "CONNECT":
		// authority-form: host:port, nothing else (RFC 9112 section 3.2.3).
		if t[0] == '/' || bytes.IndexByte(t, '@') >= 0 || !validHost(t) || bytes.IndexByte(t, ':') < 0 {
			return errBadTarget
		}
		req.Target = bstr(t)
		return nil
	case t[0] == '/':
		req.Target = bstr(t)
		return nil
	case len(t) == 1 && t[0] == '*':
		if req.Method != "OPTIONS" {
			return errBadTarget
		}
		req.Target = "*"
		return nil
	}
	// absolute-form (RFC 9112 section 3.2.2): the authority replaces Host.
	var rest []byte
	switch {
	case len(t) > 7 && equalFoldBytes(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && equalFoldBytes(t[:8], "https://"):
		rest = t[8:]
	default:
		return errBadTarget
	}
	end := len(rest)
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	auth := rest[:end]
	if len(auth) == 0 || bytes.IndexByte(auth, '@') >= 0 || !validHost(auth) {
		return errBadTarget
	}
	req.Authority = bstr(auth)
	switch path := rest[end:]; {
	case len(path) == 0:
		req.Target = "/"
	case path[0] == '?':
		req.Target = "/" + string(path)
	default:
		req.Target = bstr(path)
	}
	return nil
}

// internMethod returns a constant string for the common methods so that comparisons and
// stored values do not depend on the read buffer.
func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return bstr(m)
}

// respHead is what parsing a response head learned beyond the message.Response fields.
type respHead struct {
	framing
	http10 bool
}

// parseResponseHead parses a complete response head into resp, with the same field rules as
// requests. The reason phrase may be empty and the SP before it may be missing.
func parseResponseHead(head []byte, resp *message.Response, rh *respHead, maxFields int) *protoError {
	rh.framing.reset()
	line, i, err := nextLine(head, 0)
	if err != nil {
		return errBadStatusLine
	}
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[6] != '.' || line[8] != ' ' {
		return errBadStatusLine
	}
	switch string(line[5:8]) {
	case "1.1":
		resp.Proto, rh.http10 = message.HTTP11, false
	case "1.0":
		resp.Proto, rh.http10 = message.HTTP10, true
	default:
		return errBadStatusLine
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadStatusLine
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return errBadStatusLine
	}
	resp.Status = code
	resp.Reason = ""
	if len(line) > 12 {
		if line[12] != ' ' {
			return errBadStatusLine
		}
		reason := line[13:]
		for _, c := range reason {
			if !isFieldByte[c] {
				return errBadStatusLine
			}
		}
		resp.Reason = bstr(reason)
	}
	fields := 0
	for {
		line, next, err := nextLine(head, i)
		if err != nil {
			return err
		}
		i = next
		if len(line) == 0 {
			return nil
		}
		name, value, err := parseFieldLine(line)
		if err != nil {
			return err
		}
		if fields++; fields > maxFields {
			return errTooManyHeaders
		}
		framingField, err := rh.field(name, value)
		if err != nil {
			return err
		}
		if framingField && len(name) != 4 { // Host stays in a response header
			continue
		}
		resp.Header.Add(bstr(name), bstr(value))
	}
}
