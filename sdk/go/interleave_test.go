package sdk

import "testing"

// TestLevelsKeepStateApart: an invocation nested in another (a re-entrant verge_handle)
// starts with an empty WaitUntil list and its own goroutine count, and the outer one's are
// back when it returns.
func TestLevelsKeepStateApart(t *testing.T) {
	outer := enterLevel()
	ran := ""
	WaitUntil(func() { ran += "outer" })
	base := goroutineBase
	inner := enterLevel()
	if len(waitUntil) != 0 {
		t.Fatalf("nested level sees %d WaitUntil functions of the outer one", len(waitUntil))
	}
	WaitUntil(func() { ran += "inner" })
	if depth != 2 {
		t.Fatalf("depth %d, want 2", depth)
	}
	inner.leave()
	if len(waitUntil) != 1 || goroutineBase != base || depth != 1 {
		t.Fatalf("after the nested level: %d WaitUntil functions, base %d (want 1, %d), depth %d", len(waitUntil), goroutineBase, base, depth)
	}
	waitUntil[0]()
	if ran != "outer" {
		t.Fatalf("outer WaitUntil ran %q", ran)
	}
	outer.leave()
	if depth != 0 {
		t.Fatalf("depth %d after both levels, want 0", depth)
	}
}
