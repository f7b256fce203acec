package router

import (
	"testing"

	"github.com/verge-edge/verge/limits"
)

func TestCountsRoundTrip(t *testing.T) {
	b := encodeCounts("n1", "api", "sig", 1234567, []limits.Delta{{Key: "a\x00", Count: 3}, {Key: "", Count: 1}})
	m, err := decodeCounts(b)
	if err != nil || m.node != "n1" || m.rule != "api" || m.sig != "sig" || m.start != 1234567 || len(m.deltas) != 2 ||
		m.deltas[0].key != "a\x00" || m.deltas[0].count != 3 || m.deltas[1].count != 1 {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := decodeCounts(b[:len(b)-1]); err == nil {
		t.Fatal("a message cut inside its last pair decoded")
	}
}

// FuzzDecodeCounts feeds arbitrary messages to the decoder: it errs or decodes, never panics,
// and never returns a negative count.
func FuzzDecodeCounts(f *testing.F) {
	f.Add(encodeCounts("n1", "api", "sig", 1, []limits.Delta{{Key: "k", Count: 2}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeCounts(b)
		if err != nil {
			return
		}
		for _, d := range m.deltas {
			if d.count < 0 {
				t.Fatalf("negative count %d", d.count)
			}
		}
	})
}
