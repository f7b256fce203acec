package worker

import (
	"testing"

	"github.com/verge-edge/verge/internal/workerabi"
)

// TestEvictInvocationRefusesHostOperations: an eviction (KindDOEvict) runs while the
// namespace may be busy elsewhere and outside any object's turn; a guest that tries storage,
// calls, KV, fetch or the request there gets UNAVAILABLE, and only learns which object left.
func TestEvictInvocationRefusesHostOperations(t *testing.T) {
	inv := &invocation{kind: workerabi.KindDOEvict, objID: "abc"}
	for _, op := range []uint32{workerabi.OpStGet, workerabi.OpStPut, workerabi.OpStDeleteAll, workerabi.OpStSQL,
		workerabi.OpAlarmSet, workerabi.OpDOFetch, workerabi.OpDOIDFromName, workerabi.OpKVGet, workerabi.OpKVPut,
		workerabi.OpFetch, workerabi.OpReqHead, workerabi.OpRespEnd, workerabi.OpEnv} {
		if st, res := inv.dispatch(op, nil); st != workerabi.StatusUnavailable {
			t.Errorf("op %d during an eviction: status %d (%q), want UNAVAILABLE", op, st, res)
		}
	}
	st, res := inv.dispatch(workerabi.OpDOContext, nil)
	d := workerabi.Decoder{B: res}
	d.Str()
	d.Str()
	if id := d.Str(); st != workerabi.StatusOK || id != "abc" {
		t.Fatalf("DO_CONTEXT during an eviction: %d %q, want the evicted object's id", st, id)
	}
}

func TestObjectsPer(t *testing.T) {
	for _, c := range []struct {
		abi         uint32
		limit, want int
	}{{0, 16, 1}, {1, 16, 1}, {2, 16, 16}, {2, 1, 1}, {3, 64, 64}, {2, 0, 1}} {
		if got := objectsPer(c.abi, c.limit); got != c.want {
			t.Errorf("objectsPer(%d, %d) = %d, want %d", c.abi, c.limit, got, c.want)
		}
	}
}

// TestObjRequestDepth: the depth of a chain of service calls travels after the request's
// head and body, which are length-prefixed, so whatever bytes a worker or a client puts in
// them never reads as a depth; a depth out of range is refused.
func TestObjRequestDepth(t *testing.T) {
	forged := []byte{0, 0, 0, 0, 15, 0, 0, 0} // a guest's attempt at a trailing depth
	for _, depth := range []int{0, 1, 15} {
		head, body, got, err := decodeObjRequest(encodeObjRequest(forged, forged, depth))
		if err != nil || got != depth || string(head) != string(forged) || string(body) != string(forged) {
			t.Errorf("depth %d: decoded %d %q %q %v", depth, got, head, body, err)
		}
	}
	for _, bad := range []int{16, 1000} {
		p := encodeObjRequest(nil, nil, 0)
		p = append(p, byte(bad), byte(bad>>8), 0, 0)
		if _, _, _, err := decodeObjRequest(p); err == nil {
			t.Errorf("depth %d accepted", bad)
		}
	}
}
