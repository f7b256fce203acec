package h2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var testLimits = filterLimits{maxFrameSize: DefaultMaxReadFrameSize, maxHeaderList: 8 << 10}

// chunkConn is a net.Conn whose Read returns data in pieces of the given sizes (the last
// size repeats), then io.EOF. Only Read is implemented.
type chunkConn struct {
	net.Conn
	data   []byte
	chunks []int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data))
	if len(c.chunks) > 0 {
		n = min(n, c.chunks[0])
		if len(c.chunks) > 1 {
			c.chunks = c.chunks[1:]
		}
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// wire builds a client byte stream: the preface, then frames written by fn.
func wire(t testing.TB, fn func(fr *http2.Framer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fn(http2.NewFramer(&buf, nil))
	return buf.Bytes()
}

// filtered returns what x/net would read from the client bytes in through the filter, with
// the client's bytes arriving in reads of the given sizes.
func filtered(t testing.TB, in []byte, lim filterLimits, chunks ...int) []byte {
	t.Helper()
	out, err := io.ReadAll(newFilterConn(&chunkConn{data: bytes.Clone(in), chunks: chunks}, lim))
	if err != nil {
		t.Fatalf("reading through the filter: %v", err)
	}
	return out
}

// serverSide reads the filtered stream as x/net's server does: preface, then frames with
// x/net's own HPACK decoding and limits.
func serverSide(t testing.TB, c net.Conn, lim filterLimits) *http2.Framer {
	t.Helper()
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil || string(pre) != http2.ClientPreface {
		t.Fatalf("preface: %q, %v", pre, err)
	}
	fr := http2.NewFramer(io.Discard, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(headerTableSize, nil)
	fr.MaxHeaderListSize = lim.maxHeaderList
	fr.SetMaxReadFrameSize(lim.maxFrameSize)
	return fr
}

func settingsFrame(t testing.TB, s ...http2.Setting) []byte {
	t.Helper()
	return wire(t, func(fr *http2.Framer) { fr.WriteSettings(s...) })[len(http2.ClientPreface):]
}

func TestFilterSettingsDedup(t *testing.T) {
	iws, mfs, hts := http2.SettingInitialWindowSize, http2.SettingMaxFrameSize, http2.SettingHeaderTableSize
	many := func(n int) []http2.Setting {
		var s []http2.Setting
		for i := range n {
			s = append(s, http2.Setting{ID: http2.SettingID(0x100 + i%12), Val: uint32(i)})
		}
		return s
	}
	set := func(id http2.SettingID, v uint32) http2.Setting { return http2.Setting{ID: id, Val: v} }
	lastOfMany := func(n int) []http2.Setting {
		s := many(n)
		return s[len(s)-12:]
	}
	for _, tc := range []struct {
		name    string
		in, out []http2.Setting
	}{
		{"h2spec 6.5.3", []http2.Setting{set(iws, 100), set(iws, 1)}, []http2.Setting{set(iws, 1)}},
		{"no duplicates unchanged", []http2.Setting{set(iws, 100), set(hts, 1)}, []http2.Setting{set(iws, 100), set(hts, 1)}},
		{"last occurrence kept in place",
			[]http2.Setting{set(iws, 1), set(hts, 2), set(iws, 3), set(mfs, 1<<15), set(hts, 4)},
			[]http2.Setting{set(iws, 3), set(mfs, 1<<15), set(hts, 4)}},
		{"first invalid value only", []http2.Setting{set(iws, 1), set(mfs, 1), set(iws, 2), set(mfs, 2)}, []http2.Setting{set(mfs, 1)}},
		{"invalid window reported as in order", []http2.Setting{set(iws, 1<<31), set(iws, 5)}, []http2.Setting{set(iws, 1<<31)}},
		{"many entries", many(60), lastOfMany(60)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := wire(t, func(fr *http2.Framer) { fr.WriteSettings(tc.in...) })
			want := append([]byte(http2.ClientPreface), settingsFrame(t, tc.out...)...)
			if got := filtered(t, in, testLimits); !bytes.Equal(got, want) {
				t.Fatalf("got\n%x\nwant\n%x", got, want)
			}
		})
	}
}

// TestFilterSplitReads checks the filter's output does not depend on how the client's bytes
// are split across reads: duplicate SETTINGS, a header block over HEADERS and two
// CONTINUATION frames, a padded bad request, DATA and PING, split at every byte.
func TestFilterSplitReads(t *testing.T) {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	block := func(extra ...hpack.HeaderField) []byte {
		hbuf.Reset()
		for _, f := range append(reqFields("/split"), extra...) {
			enc.WriteField(f)
		}
		return bytes.Clone(hbuf.Bytes())
	}
	in := wire(t, func(fr *http2.Framer) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 9}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 7})
		b := block(hpack.HeaderField{Name: "x-long", Value: strings.Repeat("v", 40)})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:5], EndStream: false})
		fr.WriteContinuation(1, false, b[5:20])
		fr.WriteContinuation(1, true, b[20:])
		fr.WriteData(1, true, []byte("body"))
		fr.WritePing(false, [8]byte{1})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(hpack.HeaderField{Name: "connection", Value: "close"}), EndStream: true, EndHeaders: true, PadLength: 3})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(hpack.HeaderField{Name: "te", Value: "trailers"}), EndStream: true, EndHeaders: true})
	})
	want := filtered(t, in, testLimits)
	checkStream(t, want)
	for s := 1; s < len(in); s++ {
		if got := filtered(t, in, testLimits, s, len(in)); !bytes.Equal(got, want) {
			t.Fatalf("split at %d: output differs\ngot  %x\nwant %x", s, got, want)
		}
	}
	if got := filtered(t, in, testLimits, 1); !bytes.Equal(got, want) {
		t.Fatalf("byte by byte: output differs")
	}
	// x/net's own read pattern (header, then payload) over a one-byte-at-a-time conn.
	fr := serverSide(t, newFilterConn(&chunkConn{data: in, chunks: []int{1}}, testLimits), testLimits)
	for {
		if _, err := fr.ReadFrame(); err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue
			}
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
	}
}

// checkStream asserts what x/net reads from the TestFilterSplitReads stream.
func checkStream(t *testing.T, out []byte) {
	t.Helper()
	fr := serverSide(t, newFilterConn(&chunkConn{data: out}, testLimits), testLimits)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf := f.(*http2.SettingsFrame)
	if sf.NumSettings() != 1 || sf.Setting(0).Val != 7 {
		t.Fatalf("SETTINGS: got %v, want INITIAL_WINDOW_SIZE=7 only", sf)
	}
	mh, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if got := mh.(*http2.MetaHeadersFrame).PseudoValue("path"); got != "/split" {
		t.Fatalf("stream 1 :path = %q", got)
	}
	fr.ReadFrame() // DATA
	fr.ReadFrame() // PING
	if f, err := fr.ReadFrame(); !rejected(f, err, 3) {
		t.Fatalf("stream 3 (connection: close): got %v, %v, want it rejected", f, err)
	}
	mh, err = fr.ReadFrame()
	if err != nil {
		t.Fatalf("stream 5 (te: trailers): %v", err)
	}
	if te := mh.(*http2.MetaHeadersFrame).RegularFields(); te[len(te)-1] != (hpack.HeaderField{Name: "te", Value: "trailers"}) {
		t.Fatalf("stream 5 fields: %v", te)
	}
}

// rejected reports whether x/net's server rejects stream id with a stream error of type
// PROTOCOL_ERROR, given what its framer read: an error from decoding the block, or a
// HEADERS frame that depends on its own stream (which the server resets once it opened it).
func rejected(f http2.Frame, err error, id uint32) bool {
	if se := (http2.StreamError{}); errors.As(err, &se) {
		return se.StreamID == id && se.Code == http2.ErrCodeProtocol
	}
	mh, ok := f.(*http2.MetaHeadersFrame)
	return ok && err == nil && mh.StreamID == id && mh.HasPriority() && mh.Priority.StreamDep == id
}

func reqFields(path string) []hpack.HeaderField {
	return []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: "example.com"},
	}
}

// TestFilterTableStaysInSync sends many requests with an indexing encoder whose table
// churns (new values evict old ones, table size updates), interleaved with requests that
// must be rejected, and checks x/net decodes every good request exactly as sent.
func TestFilterTableStaysInSync(t *testing.T) {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	type req struct {
		id     uint32
		fields []hpack.HeaderField
		bad    bool
	}
	var reqs []req
	in := wire(t, func(fr *http2.Framer) {
		fr.WriteSettings()
		for i := range 300 {
			id := uint32(2*i + 1)
			fields := append(reqFields(fmt.Sprintf("/r/%d", i)),
				hpack.HeaderField{Name: "x-churn", Value: strings.Repeat("c", i%97) + fmt.Sprint(i)},
				hpack.HeaderField{Name: "user-agent", Value: "sync-test"},
				hpack.HeaderField{Name: "cookie", Value: fmt.Sprintf("s=%d", i), Sensitive: true})
			bad := false
			switch i % 25 {
			case 7:
				fields = append(fields, hpack.HeaderField{Name: "connection", Value: "close"})
				bad = true
			case 13:
				fields = append(fields, hpack.HeaderField{Name: "te", Value: "gzip"})
				bad = true
			case 17:
				fields = append(fields, hpack.HeaderField{Name: "upgrade", Value: fmt.Sprint("h2c-", i)})
				bad = true
			case 19:
				fields = append(fields, hpack.HeaderField{Name: "te", Value: "trailers"})
			case 23:
				enc.SetMaxDynamicTableSize(uint32(512 + 128*(i%5)))
			}
			hbuf.Reset()
			for _, f := range fields {
				enc.WriteField(f)
			}
			b := hbuf.Bytes()
			half := len(b) / 2
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:half], EndStream: true})
			fr.WriteContinuation(id, true, b[half:])
			reqs = append(reqs, req{id, fields, bad})
		}
		// The last one is bad, after everything the table went through.
		hbuf.Reset()
		fields := append(reqFields("/last"), hpack.HeaderField{Name: "keep-alive", Value: "timeout=5"})
		for _, f := range fields {
			enc.WriteField(f)
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 601, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
		reqs = append(reqs, req{601, fields, true})
	})
	fr := serverSide(t, newFilterConn(&chunkConn{data: in, chunks: []int{700, 3, 5000, 1}}, testLimits), testLimits)
	if _, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		f, err := fr.ReadFrame()
		if r.bad {
			if !rejected(f, err, r.id) {
				t.Fatalf("stream %d: got %v, %v, want it rejected", r.id, f, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("stream %d: %v", r.id, err)
		}
		mh := f.(*http2.MetaHeadersFrame)
		if mh.StreamID != r.id || len(mh.Fields) != len(r.fields) {
			t.Fatalf("stream %d: got %v", r.id, mh.Fields)
		}
		for i, hf := range mh.Fields {
			if hf.Name != r.fields[i].Name || hf.Value != r.fields[i].Value {
				t.Fatalf("stream %d field %d: got %v, want %v", r.id, i, hf, r.fields[i])
			}
		}
	}
	if f, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last request: %v, %v", f, err)
	}
}

// TestFilterMarkingEdges covers where the marking goes: a frame already at the size limit
// gets a CONTINUATION of its own, padding stays at the end, and a list over the size limit
// is left to x/net (431), as is a block x/net would not decode.
func TestFilterMarkingEdges(t *testing.T) {
	lim := filterLimits{maxFrameSize: DefaultMaxReadFrameSize, maxHeaderList: 64 << 10}
	bad := hpack.HeaderField{Name: "transfer-encoding", Value: "chunked"}
	encode := func(fields ...hpack.HeaderField) []byte {
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for _, f := range fields {
			enc.WriteField(f)
		}
		return buf.Bytes()
	}
	t.Run("full frame", func(t *testing.T) {
		b := encode(append(reqFields("/"), bad)...)
		// Grow the block with a literal (never indexed) so the frame is exactly at the limit.
		filler := hpack.HeaderField{Name: "x-fill", Sensitive: true}
		// 'f' takes 6 bits in Huffman code: start a little below the size that fits.
		for n := (int(lim.maxFrameSize)-len(b)-20)*8/6 - 50; ; n++ {
			filler.Value = strings.Repeat("f", n)
			if len(b)+len(encode(filler)) == int(lim.maxFrameSize) {
				break
			}
		}
		b = append(b, encode(filler)...)
		in := wire(t, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndStream: true, EndHeaders: true})
		})
		out := filtered(t, in, lim)
		if want := len(in) + frameHeaderLen + len(malformedField); len(out) != want {
			t.Fatalf("output %d bytes, want %d (an extra CONTINUATION)", len(out), want)
		}
		f, err := serverSide(t, newFilterConn(&chunkConn{data: out}, lim), lim).ReadFrame()
		if se := (http2.StreamError{}); !errors.As(err, &se) || se.StreamID != 1 || se.Code != http2.ErrCodeProtocol {
			t.Fatalf("got %v, %v, want stream error PROTOCOL_ERROR from decoding", f, err)
		}
	})
	t.Run("padded", func(t *testing.T) {
		in := wire(t, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(append(reqFields("/"), bad)...),
				EndStream: true, EndHeaders: true, PadLength: 200, Priority: http2.PriorityParam{StreamDep: 0, Weight: 9}})
			fr.WritePing(false, [8]byte{})
		})
		fr := serverSide(t, newFilterConn(&chunkConn{data: filtered(t, in, lim)}, lim), lim)
		f, err := fr.ReadFrame()
		if err != nil || !rejected(f, err, 1) {
			t.Fatalf("got %v, %v, want a self-dependent HEADERS", f, err)
		}
		if mh := f.(*http2.MetaHeadersFrame); mh.Priority.Weight != 9 || mh.PseudoValue("path") != "/" {
			t.Fatalf("priority %+v, :path %q: the frame was damaged", mh.Priority, mh.PseudoValue("path"))
		}
		if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FramePing {
			t.Fatalf("after the padded frame: %v, %v", f, err)
		}
	})
	t.Run("over the list limit", func(t *testing.T) {
		small := filterLimits{maxFrameSize: DefaultMaxReadFrameSize, maxHeaderList: 1 << 10}
		in := wire(t, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: encode(append(reqFields("/"), hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", 1000)}, bad)...)})
		})
		if out := filtered(t, in, small); !bytes.Equal(out, in) {
			t.Fatal("a header list x/net truncates (431) was changed")
		}
	})
	t.Run("pad too long", func(t *testing.T) {
		in := wire(t, func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FrameHeaders, flagEndHeaders|flagPadded, 1, append([]byte{200}, encode(bad)...))
		})
		if out := filtered(t, in, lim); !bytes.Equal(out, in) {
			t.Fatal("a block x/net does not decode was changed")
		}
	})
	t.Run("frame too large passes", func(t *testing.T) {
		in := wire(t, func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FrameHeaders, flagEndHeaders, 1, make([]byte, lim.maxFrameSize+1))
			fr.WriteRawFrame(http2.FrameSettings, 0, 0, settingsFrame(t, http2.Setting{ID: 1, Val: 1}, http2.Setting{ID: 1, Val: 2})[frameHeaderLen:])
		})
		if out := filtered(t, in, lim); !bytes.Equal(out, in) {
			t.Fatal("bytes after an oversized frame were changed")
		}
	})
}

// BenchmarkFilterHeaders measures the filter alone on a steady-state request: a HEADERS
// frame of indexed fields, read as x/net reads it (header, then payload).
func BenchmarkFilterHeaders(b *testing.B) {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	fields := append(reqFields("/bench"), hpack.HeaderField{Name: "user-agent", Value: "bench"},
		hpack.HeaderField{Name: "accept", Value: "*/*"})
	var first, steady bytes.Buffer
	for i, w := range []*bytes.Buffer{&first, &steady} {
		hbuf.Reset()
		for _, f := range fields {
			enc.WriteField(f)
		}
		http2.NewFramer(w, nil).WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
	}
	src := &loopConn{prefix: append([]byte(http2.ClientPreface), first.Bytes()...), loop: steady.Bytes()}
	fc := newFilterConn(src, testLimits)
	buf := make([]byte, 16<<10)
	io.ReadFull(fc, buf[:len(src.prefix)])
	b.ReportAllocs()
	b.SetBytes(int64(len(src.loop)))
	for b.Loop() {
		if _, err := io.ReadFull(fc, buf[:frameHeaderLen]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(fc, buf[:len(src.loop)-frameHeaderLen]); err != nil {
			b.Fatal(err)
		}
	}
}

// loopConn reads prefix once, then loop forever.
type loopConn struct {
	net.Conn
	prefix, loop []byte
	off          int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	n := copy(p, c.loop[c.off:])
	c.off = (c.off + n) % len(c.loop)
	return n, nil
}

// FuzzFilter feeds arbitrary client bytes through the filter in arbitrary read sizes: it must
// not panic, must end, and may only grow the stream by the marks it adds.
func FuzzFilter(f *testing.F) {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, extra := range []hpack.HeaderField{{Name: "connection", Value: "close"}, {Name: "te", Value: "trailers"}} {
		hbuf.Reset()
		for _, hf := range append(reqFields("/f"), extra) {
			enc.WriteField(hf)
		}
		b := hbuf.Bytes()
		f.Add(wire(f, func(fr *http2.Framer) {
			fr.WriteSettings(http2.Setting{ID: 4, Val: 1}, http2.Setting{ID: 4, Val: 2})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:4], PadLength: 2})
			fr.WriteContinuation(1, true, b[4:])
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b, EndHeaders: true, EndStream: true})
		})[len(http2.ClientPreface):], uint8(7))
	}
	f.Fuzz(func(t *testing.T, frames []byte, chunk uint8) {
		in := append([]byte(http2.ClientPreface), frames...)
		out, err := io.ReadAll(newFilterConn(&chunkConn{data: in, chunks: []int{int(chunk) + 1}}, testLimits))
		if err != nil && err != io.ErrUnexpectedEOF {
			t.Fatalf("read: %v", err)
		}
		// At most one mark per 9 input bytes (a frame header).
		if max := len(in) + (len(in)/frameHeaderLen+1)*heldSlack; len(out) > max {
			t.Fatalf("output %d bytes from %d", len(out), len(in))
		}
	})
}
