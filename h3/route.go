package h3

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/quic-go/quic-go"
)

// Connection IDs chosen by Verge are ConnIDLen bytes long and start with the TagLen-byte tag
// of the process generation that chose them, so that during a binary upgrade the new process
// can tell the old process's packets from its own by their destination connection ID.
const (
	// ConnIDLen is the length of every server-chosen QUIC connection ID, 8 bytes.
	ConnIDLen = 8
	// TagLen is the length of the process tag at the start of each connection ID, 2 bytes.
	TagLen = 2
)

// Tag identifies one process generation in the connection IDs it chooses.
type Tag [TagLen]byte

// String is the tag in hexadecimal, as passed between processes.
func (t Tag) String() string { return hex.EncodeToString(t[:]) }

// ParseTag parses a tag written by Tag.String.
func ParseTag(s string) (Tag, error) {
	var t Tag
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != TagLen {
		return t, errors.New("h3: malformed connection ID tag " + quoteShort(s))
	}
	copy(t[:], b)
	return t, nil
}

func quoteShort(s string) string {
	if len(s) > 16 {
		s = s[:16] + "..."
	}
	return `"` + s + `"`
}

// newTag returns a random tag different from avoid.
func newTag(avoid *Tag) Tag {
	for {
		var t Tag
		rand.Read(t[:])
		if avoid == nil || t != *avoid {
			return t
		}
	}
}

// cidGenerator is quic-go's ConnectionIDGenerator: the tag followed by random bytes.
type cidGenerator struct{ tag Tag }

var _ quic.ConnectionIDGenerator = cidGenerator{}

func (g cidGenerator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [ConnIDLen]byte
	copy(b[:], g.tag[:])
	rand.Read(b[TagLen:])
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (g cidGenerator) ConnectionIDLen() int { return ConnIDLen }

// QUIC versions whose long-header packet types Verge knows (RFC 9000, RFC 9369).
const (
	version1 = 0x00000001
	version2 = 0x6b3343cf
)

// Long-header packet types, normalized to QUIC v1's numbering.
const (
	typeInitial   = 0
	type0RTT      = 1
	typeHandshake = 2
	typeRetry     = 3
)

// belongsTo reports whether the datagram b is addressed to a connection ID tagged with tag,
// that is, whether it belongs to a connection of the process generation with that tag:
//   - a short-header (1-RTT) packet whose destination connection ID starts with the tag;
//   - a long-header Handshake or 0-RTT packet whose destination connection ID has Verge's
//     length and starts with the tag.
//
// Initial packets never do: a new client's first Initial carries a random connection ID of
// the client's choosing, which may start with any tag by chance, and a connection still
// exchanging Initial packets has not been accepted, so it belongs to whoever accepts new
// connections. Version negotiation, Retry, unknown versions and packets too short to parse
// stay where they were read. In a coalesced datagram the first packet decides (RFC 9000
// section 12.2 requires the same destination connection ID in all of them).
func belongsTo(b []byte, tag Tag) bool {
	if len(b) == 0 {
		return false
	}
	if b[0]&0x80 == 0 { // short header: flags, then the DCID of our fixed length
		return len(b) > ConnIDLen && b[1] == tag[0] && b[2] == tag[1]
	}
	if len(b) < 6+ConnIDLen {
		return false
	}
	typ := (b[0] >> 4) & 0x3
	switch binary.BigEndian.Uint32(b[1:5]) {
	case version1:
	case version2: // RFC 9369 section 3.2: Initial 1, 0-RTT 2, Handshake 3, Retry 0
		typ = (typ + 3) & 0x3
	default:
		return false
	}
	if typ != typeHandshake && typ != type0RTT {
		return false
	}
	return b[5] == ConnIDLen && b[6] == tag[0] && b[7] == tag[1]
}
