package h2

import (
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/message"
)

// Kinds of header block.
const (
	blockRequest  = iota // opens a stream
	blockTrailers        // request trailers
	blockIgnore          // decoded only to keep the HPACK table in step
)

// Pseudo-header bits.
const (
	pseudoMethod = 1 << iota
	pseudoScheme
	pseudoPath
	pseudoAuthority
)

// headerBlock is the header block being decoded: a HEADERS frame and its CONTINUATIONs.
type headerBlock struct {
	open      bool
	id        uint32
	endStream bool
	kind      int
	s         *stream // the new stream, or the one receiving trailers
	fail      errCode // for blockIgnore: reset the stream with this code at the end, if not 0
	reason    string  // why the block is malformed (RFC 9113 section 8.1.1); "" if it is not
	size      uint32  // decoded list size so far (RFC 9113 section 6.5.2)
	tooLarge  bool
	frag      int // encoded bytes so far
	regular   bool
	pseudo    uint8
	method    string
	path      string
	authority string
	host      string
	cl        int64 // content-length, -1 if none
	te        int
	cookies   int
}

func (sc *serverConn) onHeaders(flags byte, id uint32, p []byte) error {
	if id == 0 {
		return connError{codeProtocol, "headers_stream_zero"}
	}
	if id%2 == 0 {
		return connError{codeProtocol, "headers_even_stream"}
	}
	frag, ok := padded(flags, p)
	if !ok {
		return connError{codeProtocol, "headers_pad"}
	}
	hb := &sc.hb
	*hb = headerBlock{open: true, id: id, endStream: flags&flagEndStream != 0, cl: -1}
	if flags&flagPriority != 0 {
		if len(frag) < 5 {
			return connError{codeFrameSize, "headers_priority_size"}
		}
		if dep := uint32(frag[0]&0x7f)<<24 | uint32(frag[1])<<16 | uint32(frag[2])<<8 | uint32(frag[3]); dep == id {
			hb.reason = "priority_self_dependency"
		}
		frag = frag[5:]
	}
	sc.mu.Lock()
	s := sc.streams[id]
	switch {
	case s != nil:
		switch {
		case s.remoteDone:
			hb.kind, hb.fail = blockIgnore, codeStreamClosed
		case s.gotTrailers:
			sc.mu.Unlock()
			return connError{codeProtocol, "second_trailers"}
		default:
			s.gotTrailers = true
			hb.kind, hb.s = blockTrailers, s
			s.trailerIn.Reset()
			if !hb.endStream {
				hb.reason = "trailers_without_end_stream"
			}
		}
	case id <= sc.maxClientID:
		idle, _ := sc.closedStateLocked(id)
		sc.mu.Unlock()
		if !idle && sc.recentLocked(id) {
			return connError{codeStreamClosed, "headers_on_closed"}
		}
		return connError{codeProtocol, "headers_stream_id_reused"}
	default:
		sc.maxClientID = id
		if sc.goAway {
			hb.kind = blockIgnore
		} else {
			hb.kind = blockRequest
			hb.s = sc.newStream(id)
		}
	}
	sc.mu.Unlock()
	sc.dec.SetEmitEnabled(hb.kind != blockIgnore)
	return sc.headerFragment(flags, frag)
}

func (sc *serverConn) onContinuation(flags byte, id uint32, p []byte) error {
	if !sc.hb.open {
		return connError{codeProtocol, "continuation_without_headers"}
	}
	return sc.headerFragment(flags, p)
}

// recentLocked reports whether id is among the recently closed streams.
func (sc *serverConn) recentLocked(id uint32) bool {
	for i := range min(sc.nrecent, len(sc.recent)) {
		if sc.recent[i].id == id {
			return true
		}
	}
	return false
}

// headerFragment decodes one fragment of the current block.
func (sc *serverConn) headerFragment(flags byte, frag []byte) error {
	hb := &sc.hb
	hb.frag += len(frag)
	if hb.frag > sc.st.maxBlock {
		// Far past the list limit: a flood of CONTINUATION frames.
		sc.dropBlock()
		return connError{codeEnhanceYourCalm, "header_block_too_large"}
	}
	if _, err := sc.dec.Write(frag); err != nil {
		sc.dropBlock()
		return connError{codeCompression, "hpack"}
	}
	if flags&flagEndHeaders == 0 {
		return nil
	}
	hb.open = false
	if err := sc.dec.Close(); err != nil {
		sc.dropBlock()
		return connError{codeCompression, "hpack"}
	}
	return sc.endBlock()
}

// dropBlock releases the stream a failed request block was decoding into.
func (sc *serverConn) dropBlock() {
	if hb := &sc.hb; hb.kind == blockRequest && hb.s != nil {
		sc.mu.Lock()
		hb.s.closed, hb.s.handlerDone = true, true
		hb.s.recycleLocked()
		sc.mu.Unlock()
		hb.s = nil
	}
}

// onField sees each decoded field of the current block.
func (sc *serverConn) onField(f hpack.HeaderField) {
	hb := &sc.hb
	hb.size += uint32(len(f.Name)+len(f.Value)) + 32
	if hb.size > sc.st.maxHeaderList {
		hb.tooLarge = true
		sc.dec.SetEmitEnabled(false)
		return
	}
	if hb.reason != "" {
		return
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		hb.reason = "invalid_field_value"
		return
	}
	if len(f.Name) > 0 && f.Name[0] == ':' {
		if hb.regular || hb.kind == blockTrailers {
			hb.reason = "misplaced_pseudo_header"
			return
		}
		var bit uint8
		var dst *string
		switch f.Name {
		case ":method":
			bit, dst = pseudoMethod, &hb.method
		case ":scheme":
			bit, dst = pseudoScheme, nil
		case ":path":
			bit, dst = pseudoPath, &hb.path
		case ":authority":
			bit, dst = pseudoAuthority, &hb.authority
		default:
			hb.reason = "unknown_pseudo_header"
			return
		}
		if hb.pseudo&bit != 0 {
			hb.reason = "duplicate_pseudo_header"
			return
		}
		hb.pseudo |= bit
		if dst != nil {
			*dst = f.Value
		}
		return
	}
	hb.regular = true
	if !validWireName(f.Name) {
		hb.reason = "invalid_field_name"
		return
	}
	value := f.Value
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		hb.reason = "connection_specific_field"
		return
	case "te":
		hb.te++
		if hb.te > 1 || value != "trailers" && value != "" {
			hb.reason = "te_not_trailers"
			return
		}
	case "host":
		if hb.kind == blockRequest {
			hb.host = value
			return
		}
	case "cookie":
		hb.cookies++
	case "content-length":
		if hb.kind == blockRequest {
			v, err := strconv.ParseInt(value, 10, 64)
			if err != nil || v < 0 || hb.cl >= 0 && hb.cl != v {
				hb.reason = "bad_content_length"
				return
			}
			hb.cl = v
		}
	case "trailer":
		value = lowerValue(value)
	}
	if hb.kind == blockTrailers {
		if badTrailer(f.Name) {
			hb.reason = "field_not_allowed_in_trailers"
			return
		}
		hb.s.trailerIn.Add(f.Name, value)
		return
	}
	hb.s.req.Header.Add(f.Name, value)
}

// validWireName reports whether name is a token without upper-case letters (RFC 9113
// section 8.2.1).
func validWireName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// lowerValue lower-cases a list of field names, allocating only when it changes.
func lowerValue(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(v)
		}
	}
	return v
}

// endBlock acts on a complete header block.
func (sc *serverConn) endBlock() error {
	hb := &sc.hb
	switch hb.kind {
	case blockIgnore:
		sc.charge(costFrame, "ignored_headers_flood")
		if hb.fail != 0 {
			sc.streamError(hb.id, hb.fail, "headers_half_closed")
		}
		return nil
	case blockTrailers:
		if hb.reason == "" && hb.tooLarge {
			hb.reason = "trailers_too_large"
		}
		if hb.reason != "" {
			sc.streamError(hb.id, codeProtocol, hb.reason)
			return nil
		}
		s := hb.s
		sc.mu.Lock()
		defer sc.mu.Unlock()
		if s.closed {
			return nil
		}
		if s.declared >= 0 && s.bodyBytes != s.declared {
			sc.countError("stream", codeProtocol, "content_length_mismatch")
			sc.resetLocked(s, codeProtocol, true, errContentLength)
			return nil
		}
		s.remoteDone, s.bodyEOF = true, true
		s.wakeBodyLocked()
		sc.maybeCloseLocked(s)
		return nil
	}
	s := hb.s
	hb.s = nil
	reject := func(code errCode, reason string) error {
		sc.mu.Lock()
		s.closed, s.handlerDone = true, true
		s.recycleLocked()
		sc.mu.Unlock()
		sc.streamError(hb.id, code, reason)
		return nil
	}
	if hb.tooLarge {
		sc.countError("stream", codeNo, "header_list_too_large")
		sc.charge(costReject, "rejected_header_flood")
		sc.answer(s, status431Block)
		return nil
	}
	if hb.reason == "" {
		if hb.method == "CONNECT" {
			if hb.pseudo&(pseudoScheme|pseudoPath) != 0 || hb.authority == "" {
				hb.reason = "bad_connect_pseudo_headers"
			}
		} else if hb.method == "" || hb.pseudo&pseudoScheme == 0 || hb.path == "" {
			hb.reason = "missing_pseudo_header"
		}
	}
	if hb.reason == "" && hb.endStream && hb.cl > 0 {
		hb.reason = "content_length_without_body"
	}
	if hb.reason != "" {
		return reject(codeProtocol, hb.reason)
	}
	if lim := sc.st.maxBody; lim > 0 && hb.cl > lim {
		sc.countError("stream", codeNo, "body_too_large")
		sc.charge(costReject, "stream_error_flood")
		sc.answer(s, status413Block)
		return nil
	}
	sc.mu.Lock()
	if len(sc.wbuf) > maxPendingResponses {
		// The client sends requests and does not read the answers (see maxPendingResponses).
		s.closed, s.handlerDone = true, true
		s.recycleLocked()
		sc.mu.Unlock()
		return connError{codeEnhanceYourCalm, "responses_unread"}
	}
	if sc.open >= int(sc.st.maxStreams) {
		code := codeProtocol
		if sc.unackedSet > 0 {
			code = codeRefusedStream
		}
		sc.mu.Unlock()
		return reject(code, "over_max_streams")
	}
	sc.mu.Unlock()

	req := &s.req
	req.Method = hb.method
	req.Target = hb.path
	if hb.method == "CONNECT" {
		req.Target = hb.authority
	}
	req.Scheme = sc.scheme
	req.Authority = hb.authority
	if req.Authority == "" {
		req.Authority = hb.host
	}
	req.Proto = message.HTTP2
	if hb.cookies > 1 {
		joinCookies(&req.Header)
	}
	switch {
	case hb.cl >= 0:
		req.ContentLength = hb.cl
	case hb.endStream:
		req.ContentLength = 0
	default:
		req.ContentLength = -1
	}
	s.declared = hb.cl
	if req.ContentLength != 0 {
		br := &bodyReader{s: s, c: sc, gen: s.gen.Load()}
		br.cond.L = &sc.mu
		s.br = br
		req.Body = br
		s.expect100 = message.EqualFold(req.Header.Get("expect"), "100-continue")
	}

	sc.credit(costFrame)
	sc.mu.Lock()
	s.sendWindow = int64(sc.peerWindow)
	s.inMap = true
	sc.streams[hb.id] = s
	sc.open++
	if hb.endStream {
		s.remoteDone, s.bodyEOF = true, true
	}
	if sc.running < int(sc.st.maxStreams) {
		sc.running++
		sc.mu.Unlock()
		sc.st.pool.run(s)
		return nil
	}
	if len(sc.queue) >= 4*int(sc.st.maxStreams) {
		// Streams keep being opened (and reset) while every handler slot is taken.
		sc.mu.Unlock()
		return connError{codeEnhanceYourCalm, "too_many_early_resets"}
	}
	sc.queue = append(sc.queue, s)
	sc.mu.Unlock()
	return nil
}

// answer releases the stream a rejected request block decoded into and answers the request
// with a head-only response (block), resetting the stream with NO_ERROR when the client is
// still sending (RFC 9113 section 8.1), without running a handler.
func (sc *serverConn) answer(s *stream, block []byte) {
	hb := &sc.hb
	sc.mu.Lock()
	s.closed, s.handlerDone = true, true
	s.recycleLocked()
	b := appendHeaderBlock(sc.wbufLocked(), hb.id, block, true, sc.peerMaxFrame)
	if !hb.endStream {
		b = appendRSTStream(b, hb.id, codeNo)
	}
	sc.wbuf = b
	sc.rememberLocked(hb.id, true)
	sc.mu.Unlock()
	sc.kick = true
}

// status431Block and status413Block are the header blocks of 431 and 413 responses.
var (
	status431Block = []byte{0x08, 0x03, '4', '3', '1'}
	status413Block = []byte{0x08, 0x03, '4', '1', '3'}
)

// joinCookies merges cookie fields into one, as HTTP/1.1 requires (RFC 9113 section 8.2.3).
func joinCookies(h *message.Header) {
	var b strings.Builder
	first := -1
	fields := h.Fields()
	for i := range fields {
		if fields[i].Name == "cookie" {
			if first < 0 {
				first = i
			} else {
				b.WriteString("; ")
			}
			b.WriteString(fields[i].Value)
		}
	}
	h.Set("cookie", b.String())
}
