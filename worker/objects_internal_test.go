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
