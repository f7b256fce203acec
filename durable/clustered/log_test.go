package clustered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

func TestLogStreamName(t *testing.T) {
	if a, b := LogStreamName("a.b"), LogStreamName("a_b"); a == b || a == "" || bytes.ContainsAny([]byte(a), ". ") {
		t.Fatalf("stream names %q and %q", a, b)
	}
}

// TestLogReplayAndFencing appends an object's committed batches (WAL pages) to the log
// through one node, rebuilds the database from the log through another node, and checks
// fencing: after a new owner's takeover record, the old owner's next append is refused.
func TestLogReplayAndFencing(t *testing.T) {
	c := clustertest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	const ns = "counter.v2"
	id := durable.IDFromName(ns, "x")
	logA, logB := NewLog(c.Nodes[0]), NewLog(c.Nodes[1])

	src := t.TempDir()
	st := durable.OpenSQLite(src)
	defer st.Close()
	obj, err := st.Open(ctx, ns, id)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	walPath := filepath.Join(src, ns, id.String()+".sqlite-wal")

	const tokenA, tokenB = 7, 9
	last, err := logA.Takeover(ctx, ns, id, tokenA, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pos WALPosition
	want := map[string][]byte{}
	for b := range 5 {
		txn, err := obj.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k, v := fmt.Sprintf("k%d", b), fmt.Sprintf("v%d", b)
		want[k] = []byte(v)
		if err := txn.Put([]durable.Entry{{Key: k, Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		var d WALDelta
		d, pos, err = ReadWAL(walPath, pos)
		if err != nil {
			t.Fatal(err)
		}
		prev := last
		if last, err = logA.Append(ctx, ns, id, tokenA, prev, d); err != nil {
			t.Fatal(err)
		}
		if b == 0 {
			// The same append again (an attempt whose acknowledgement was lost, sent
			// again): answered with the stored message's sequence, not stored twice and
			// not refused as out of sequence (JetStream checks the message ID first).
			again, err := logA.Append(ctx, ns, id, tokenA, prev, d)
			if err != nil || again != last {
				t.Fatalf("repeated append: seq %d, %v; want %d, nil", again, err, last)
			}
		}
	}

	// A new owner replays the log into an empty file and takes over.
	replica := filepath.Join(t.TempDir(), "r.sqlite")
	applied := 0
	replayed, err := logB.Replay(ctx, ns, id, 0, func(d WALDelta) error {
		applied++
		return ApplyWAL(replica, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	if replayed != last || applied != 5 {
		t.Fatalf("replay: last %d (want %d), %d batches applied (want 5)", replayed, last, applied)
	}
	if _, err := logB.Takeover(ctx, ns, id, tokenB, replayed); err != nil {
		t.Fatal(err)
	}

	// The old owner's next batch is refused.
	if _, err := logA.Append(ctx, ns, id, tokenA, last, WALDelta{}); !errors.Is(err, ErrFenced) {
		t.Fatalf("append after a takeover: got %v, want ErrFenced", err)
	}
	// So is a second takeover from the same point (two nodes restoring at once).
	if _, err := logA.Takeover(ctx, ns, id, tokenA+10, replayed); !errors.Is(err, ErrFenced) {
		t.Fatalf("second takeover from the same record: got %v, want ErrFenced", err)
	}

	// The rebuilt file holds what was committed.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ns), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(replica)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ns, id.String()+".sqlite"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	checkValues(t, dir, ns, id, want)
}
