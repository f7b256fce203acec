package h3

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// shortPacket builds a 1-RTT packet header with dcid and some payload.
func shortPacket(dcid []byte) []byte {
	b := append([]byte{0x40}, dcid...)
	return append(b, bytes.Repeat([]byte{0xaa}, 40)...)
}

// longPacket builds a long-header packet of QUIC version v with the raw two type bits.
func longPacket(v uint32, typeBits byte, dcid []byte) []byte {
	b := []byte{0xc0 | typeBits<<4}
	b = binary.BigEndian.AppendUint32(b, v)
	b = append(b, byte(len(dcid)))
	b = append(b, dcid...)
	b = append(b, 8, 1, 2, 3, 4, 5, 6, 7, 8) // SCID
	return append(b, bytes.Repeat([]byte{0xbb}, 40)...)
}

func TestBelongsTo(t *testing.T) {
	tag := Tag{0x12, 0x34}
	mine := []byte{0x12, 0x34, 1, 2, 3, 4, 5, 6}
	other := []byte{0x12, 0x35, 1, 2, 3, 4, 5, 6}
	long := []byte{0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	cases := []struct {
		name string
		b    []byte
		want bool
	}{
		{"short header, tagged", shortPacket(mine), true},
		{"short header, other tag", shortPacket(other), false},
		{"short header, truncated", []byte{0x40, 0x12, 0x34}, false},
		{"empty", nil, false},
		{"v1 handshake, tagged", longPacket(version1, 2, mine), true},
		{"v1 handshake, other tag", longPacket(version1, 2, other), false},
		{"v1 handshake, tagged but 12 bytes", longPacket(version1, 2, long), false},
		{"v1 0-RTT, tagged", longPacket(version1, 1, mine), true},
		{"v1 initial, client DCID that happens to carry the tag", longPacket(version1, 0, mine), false},
		{"v1 initial, random client DCID", longPacket(version1, 0, long), false},
		{"v1 retry", longPacket(version1, 3, mine), false},
		{"v2 handshake, tagged", longPacket(version2, 3, mine), true},
		{"v2 0-RTT, tagged", longPacket(version2, 2, mine), true},
		{"v2 initial, tagged", longPacket(version2, 1, mine), false},
		{"version negotiation", longPacket(0, 0, mine), false},
		{"unknown version", longPacket(0x1a2a3a4a, 2, mine), false},
		{"long header, truncated", longPacket(version1, 2, mine)[:10], false},
	}
	for _, c := range cases {
		if got := belongsTo(c.b, tag); got != c.want {
			t.Errorf("%s: belongsTo = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestConnectionIDsCarryTag(t *testing.T) {
	parent := Tag{0xab, 0xcd}
	for range 200 {
		if g := NewGeneration(&parent); g.Tag() == parent {
			t.Fatalf("child tag %s equals the parent's", g.Tag())
		}
	}
	g := NewGeneration(nil)
	gen := cidGenerator{tag: g.Tag()}
	if gen.ConnectionIDLen() != ConnIDLen {
		t.Fatalf("ConnectionIDLen = %d, want %d", gen.ConnectionIDLen(), ConnIDLen)
	}
	seen := map[string]bool{}
	for range 100 {
		id, err := gen.GenerateConnectionID()
		if err != nil {
			t.Fatal(err)
		}
		b, tag := id.Bytes(), g.Tag()
		if len(b) != ConnIDLen || !bytes.Equal(b[:TagLen], tag[:]) {
			t.Fatalf("connection ID %x: want %d bytes starting with %s", b, ConnIDLen, g.Tag())
		}
		if seen[string(b)] {
			t.Fatalf("connection ID %x generated twice", b)
		}
		seen[string(b)] = true
		if !belongsTo(shortPacket(b), g.Tag()) {
			t.Fatalf("short packet to %x does not belong to its generation", b)
		}
	}
	if tg, err := ParseTag(g.Tag().String()); err != nil || tg != g.Tag() {
		t.Fatalf("ParseTag(%q) = %v, %v", g.Tag().String(), tg, err)
	}
	if _, err := ParseTag("zz"); err == nil {
		t.Fatal("ParseTag accepted a malformed tag")
	}
}

func TestForwardedEncoding(t *testing.T) {
	remote := netip.MustParseAddrPort("[2001:db8::1]:4433")
	b := appendForwarded(nil, "127.0.0.1:443", remote, []byte{1, 2, 3}, []byte("payload"))
	key, r, oob, p, err := parseForwarded(b)
	if err != nil || key != "127.0.0.1:443" || r != remote || !bytes.Equal(oob, []byte{1, 2, 3}) || string(p) != "payload" {
		t.Fatalf("parse = %q %v %v %q %v", key, r, oob, p, err)
	}
	for i := range len(b) - len("payload") {
		if _, _, _, _, err := parseForwarded(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
}

// dupFile returns a copy of f's descriptor, as tableflip hands it to the new process.
func dupFile(t testing.TB, f *os.File) *os.File {
	t.Helper()
	raw, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	var derr error
	raw.Control(func(u uintptr) { fd, derr = syscall.Dup(int(u)) })
	if derr != nil {
		t.Fatal(derr)
	}
	return os.NewFile(uintptr(fd), f.Name())
}

// TestRouteBatch checks that a batch keeps the new generation's datagrams in order, in
// their own buffers, and forwards the parent's with the client address and ancillary data.
func TestRouteBatch(t *testing.T) {
	parent := NewGeneration(nil)
	ho, err := parent.PrepareHandover()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ho.Close() })
	ptag := parent.Tag()
	child := NewGeneration(&ptag)
	if err := child.Inherit(dupFile(t, ho.File())); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	rc := newRoutedConn(child, pc.(*net.UDPConn))

	ctag := child.Tag()
	pkts := [][]byte{
		shortPacket(append(ptag[:], 1, 1, 1, 1, 1, 1)),             // parent's
		longPacket(version1, 0, append(ptag[:], 9, 9, 9, 9, 9, 9)), // a new client's Initial
		shortPacket(append(ctag[:], 2, 2, 2, 2, 2, 2)),             // the child's own
		longPacket(version1, 2, append(ptag[:], 3, 3, 3, 3, 3, 3)), // parent's handshake
	}
	ms := make([]ipv4.Message, len(pkts))
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, 1452)
		ms[i].Buffers = [][]byte{bufs[i]}
		ms[i].N = copy(bufs[i], p)
		ms[i].OOB = make([]byte, 64)
		ms[i].NN = copy(ms[i].OOB, []byte{byte(i), 0xee})
		ms[i].Addr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1000 + i}
	}
	n := rc.route(ms, child.fwd.Load())
	if n != 2 {
		t.Fatalf("kept %d datagrams, want 2", n)
	}
	for i, want := range []int{1, 2} {
		m := ms[i]
		if &m.Buffers[0][0] != &bufs[i][0] {
			t.Fatalf("message %d changed buffers", i)
		}
		if !bytes.Equal(m.Buffers[0][:m.N], pkts[want]) || m.Addr.(*net.UDPAddr).Port != 1000+want || m.OOB[0] != byte(want) {
			t.Fatalf("kept message %d is not datagram %d", i, want)
		}
	}
	if f, d := child.Forwarded(); f != 2 || d != 0 {
		t.Fatalf("forwarded %d, dropped %d; want 2, 0", f, d)
	}
	buf := make([]byte, 4096)
	ho.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for _, want := range []int{0, 3} {
		n, err := ho.conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		key, remote, oob, p, err := parseForwarded(buf[:n])
		if err != nil || key != rc.key || remote.Port() != uint16(1000+want) || !bytes.Equal(oob, []byte{byte(want), 0xee}) || !bytes.Equal(p, pkts[want]) {
			t.Fatalf("forwarded datagram: key %q remote %v oob %v err %v; want datagram %d", key, remote, oob, err, want)
		}
	}

	// Once the parent is gone, forwarding stops.
	ho.Close()
	for range 3 {
		ms[0].N = copy(bufs[0], pkts[0])
		rc.route(ms[:1], child.fwd.Load())
		if child.fwd.Load() == nil {
			break
		}
	}
	if child.fwd.Load() != nil {
		t.Fatal("still forwarding after the parent closed the channel")
	}
}

func BenchmarkReadBatchNoParent(b *testing.B) {
	g := NewGeneration(nil)
	benchReadBatch(b, g)
}

func BenchmarkRouteBatchWithParent(b *testing.B) {
	ptag := Tag{1, 2}
	g := NewGeneration(&ptag)
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1452)}
		ms[i].OOB = make([]byte, 64)
	}
	dcid := append(g.tag[:], 1, 2, 3, 4, 5, 6)
	p := shortPacket(dcid)
	rc := &routedConn{g: g}
	fw := &forwarder{g: g}
	b.ReportAllocs()
	for b.Loop() {
		for i := range ms {
			ms[i].N = copy(ms[i].Buffers[0], p)
		}
		if rc.route(ms, fw) != len(ms) {
			b.Fatal("own datagrams were forwarded")
		}
	}
}

// benchReadBatch measures one datagram through routedConn.ReadBatch on loopback.
func benchReadBatch(b *testing.B, g *Generation) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	out, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	rc := newRoutedConn(g, pc.(*net.UDPConn))
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1452)}
		ms[i].OOB = make([]byte, 64)
	}
	p := shortPacket([]byte{9, 9, 1, 2, 3, 4, 5, 6})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := out.Write(p); err != nil {
			b.Fatal(err)
		}
		if n, err := rc.ReadBatch(ms, 0); err != nil || n != 1 {
			b.Fatalf("ReadBatch = %d, %v", n, err)
		}
	}
}
