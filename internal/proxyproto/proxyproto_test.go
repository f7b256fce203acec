package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct{ src, dst string }{
		{"192.0.2.7:40000", "198.51.100.1:443"},
		{"[2001:db8::7]:40000", "[2001:db8::1]:443"},
		{"192.0.2.7:1", "[2001:db8::1]:443"}, // mixed families: sent as IPv6 with a mapped source
	}
	for _, v := range []uint8{1, 2} {
		for _, tc := range cases {
			src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
			b, err := Format(v, src, dst)
			if err != nil {
				t.Fatalf("v%d %s: %v", v, tc.src, err)
			}
			h, err := ReadFrom(bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("GET /"))))
			if err != nil {
				t.Fatalf("v%d %s: %v", v, tc.src, err)
			}
			if h.Version != v || h.Local || h.Src != src || h.Dst != dst {
				t.Errorf("v%d: got %+v, want %s -> %s", v, h, src, dst)
			}
		}
	}
}

func TestLocal(t *testing.T) {
	for _, v := range []uint8{1, 2} {
		b, err := Format(v, netip.AddrPort{}, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		if v == 1 && string(b) != "PROXY UNKNOWN\r\n" {
			t.Errorf("v1 local: got %q", b)
		}
		h, err := ReadFrom(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || !h.Local || h.Src.IsValid() {
			t.Errorf("v%d local: got %+v, %v", v, h, err)
		}
	}
}

// v2 builds a v2 PROXY header over TCP/IPv4 with the given TLV bytes appended.
func v2(tlvs []byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	b = binary.BigEndian.AppendUint16(b, uint16(12+len(tlvs)))
	b = append(b, 203, 0, 113, 9, 127, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, 5555)
	b = binary.BigEndian.AppendUint16(b, 80)
	return append(b, tlvs...)
}

func TestV2TLVsSkipped(t *testing.T) {
	// An AWS-style TLV (0xEA) and a NOOP with padding.
	tlvs := []byte{0xEA, 0, 5, 1, 'v', 'p', 'c', 'e', 0x04, 0, 3, 0, 0, 0}
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(v2(tlvs)), strings.NewReader("after")))
	h, err := ReadFrom(r)
	if err != nil {
		t.Fatal(err)
	}
	if h.Src != netip.MustParseAddrPort("203.0.113.9:5555") {
		t.Errorf("src: got %v", h.Src)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "after" {
		t.Errorf("bytes after the header: got %q, want %q", rest, "after")
	}
}

func TestMalformed(t *testing.T) {
	bad := []string{
		"GET / HTTP/1.1\r\n\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",                                    // LF without CR
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",                              // port out of range
		"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",                                // bad address
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 " + strings.Repeat("x", 120) + "\r\n", // too long
		"PROXY TCP4 1.2.3.4",                                                  // truncated
		string(v2(nil)[:20]),                                                  // truncated v2
		"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("\x00", 12), // version 3
	}
	for _, s := range bad {
		if h, err := ReadFrom(bufio.NewReader(strings.NewReader(s))); err == nil {
			t.Errorf("%q: got %+v, want an error", s, h)
		}
	}
	if _, err := ReadFrom(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\n"))); !errors.Is(err, ErrNoHeader) {
		t.Errorf("plain request: got %v, want ErrNoHeader", err)
	}
}

func TestReadKeepsBytesAfterHeader(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		b.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nGET / HTTP/1.1\r\n\r\n"))
	}()
	h, rest, err := Read(a, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h.Src != netip.MustParseAddrPort("192.0.2.1:1234") || string(rest) != "GET / HTTP/1.1\r\n\r\n" {
		t.Errorf("got %+v rest %q", h, rest)
	}
}

func TestReadTimeout(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go b.Write([]byte("PROXY TCP4 ")) // and then nothing
	if _, _, err := Read(a, 50*time.Millisecond); err == nil {
		t.Fatal("a stalled header: got no error")
	}
}

func FuzzReadFrom(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n"))
	f.Add([]byte("PROXY TCP6 ::1 ::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(nil))
	f.Add(v2([]byte{0xEA, 0, 1, 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		h, err := ReadFrom(r)
		if err != nil {
			return
		}
		if h.Version != 1 && h.Version != 2 {
			t.Fatalf("version %d", h.Version)
		}
		if !h.Local && (!h.Src.IsValid() || !h.Dst.IsValid()) {
			t.Fatalf("proxied header without addresses: %+v", h)
		}
		if h.Local {
			return
		}
		// What was parsed formats back into a header that parses the same.
		b, err := Format(h.Version, h.Src, h.Dst)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := ReadFrom(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || h2.Src != h.Src || h2.Dst != h.Dst {
			t.Fatalf("round trip of %+v: got %+v, %v", h, h2, err)
		}
	})
}

func BenchmarkReadV1(b *testing.B) {
	hdr := []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n")
	br := bufio.NewReaderSize(nil, 512)
	rd := bytes.NewReader(hdr)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(hdr)
		br.Reset(rd)
		if _, err := ReadFrom(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadV2(b *testing.B) {
	hdr := v2([]byte{0xEA, 0, 5, 1, 'v', 'p', 'c', 'e'})
	br := bufio.NewReaderSize(nil, 512)
	rd := bytes.NewReader(hdr)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(hdr)
		br.Reset(rd)
		if _, err := ReadFrom(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormatV2(b *testing.B) {
	src, dst := netip.MustParseAddrPort("192.0.2.1:1234"), netip.MustParseAddrPort("192.0.2.2:80")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Format(2, src, dst); err != nil {
			b.Fatal(err)
		}
	}
}
