package clustered

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// partTestBytes is the forced part size of the parts tests: a 4 KiB page's record (4 + 4096
// bytes) needs two parts, and a batch of a few values needs dozens.
const partTestBytes = 4096

// objectWriter commits batches to an object's local database and returns each batch's
// WAL pages, as the replicated store's owner does.
type objectWriter struct {
	t   *testing.T
	obj durable.ObjectStore
	wal string
	pos WALPosition
}

func openWriter(t *testing.T, dir, ns string, id durable.ID) *objectWriter {
	t.Helper()
	st := durable.OpenSQLite(dir)
	t.Cleanup(func() { st.Close() })
	obj, err := st.Open(context.Background(), ns, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obj.Close() })
	return &objectWriter{t: t, obj: obj, wal: filepath.Join(dir, ns, id.String()+".sqlite-wal")}
}

// commit puts entries in one batch and returns the batch's WAL delta.
func (w *objectWriter) commit(entries ...durable.Entry) WALDelta {
	w.t.Helper()
	txn, err := w.obj.Begin(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	if err := txn.Put(entries); err != nil {
		w.t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		w.t.Fatal(err)
	}
	d, next, err := ReadWAL(w.wal, w.pos)
	if err != nil {
		w.t.Fatal(err)
	}
	w.pos = next
	return d
}

// subjectParts returns the part header of each message of object id's log subject ("" for
// whole records and takeovers).
func subjectParts(t *testing.T, ctx context.Context, s jetstream.Stream, subj string) []string {
	t.Helper()
	var parts []string
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, m.Header.Get(hdrPart))
		seq = m.Sequence + 1
	}
}

// replayAll replays object id's whole log into the database file of dir and returns the
// encoding of every batch applied and the last sequence.
func replayAll(t *testing.T, ctx context.Context, l *Log, dir, ns string, id durable.ID) ([][]byte, uint64) {
	t.Helper()
	path := filepath.Join(dir, ns, id.String()+".sqlite")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	last, err := l.Replay(ctx, ns, id, 0, func(d WALDelta) error {
		got = append(got, encodeDelta(d))
		return ApplyWAL(path, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, last
}

// checkValues opens the database in dir and checks it holds exactly want; then each of
// more checks the same batch.
func checkValues(t *testing.T, dir, ns string, id durable.ID, want map[string][]byte, more ...func(durable.Txn)) {
	t.Helper()
	st := durable.OpenSQLite(dir)
	defer st.Close()
	obj, err := st.Open(context.Background(), ns, id)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	txn, err := obj.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Rollback()
	got, err := txn.List(durable.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("rebuilt database: %d keys, want %d", len(got), len(want))
	}
	for _, e := range got {
		if !bytes.Equal(e.Value, want[e.Key]) {
			t.Fatalf("rebuilt %s: %d bytes differ from the %d written", e.Key, len(e.Value), len(want[e.Key]))
		}
	}
	for _, f := range more {
		f(txn)
	}
}

// TestLogParts appends batches larger than one message as parts (forced small part size)
// on a 3-node cluster and checks: they replay byte-exactly through another node; a torn
// batch at the tail (an owner that died between parts) is skipped, and the next owner's
// takeover and records after it replay correctly; a stale owner is refused before its
// first part and between two parts.
func TestLogParts(t *testing.T) {
	c := clustertest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	const ns = "parts"
	id := durable.IDFromName(ns, "p")
	subj := logSubject(ns, id)
	logs := make([]*Log, 3)
	for i := range logs {
		logs[i] = NewLog(c.Nodes[i])
		logs[i].PartBytes = partTestBytes
	}
	rng := rand.New(rand.NewPCG(1, 2))
	value := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	want := map[string][]byte{}
	entry := func(k string, n int) durable.Entry {
		want[k] = value(n)
		return durable.Entry{Key: k, Value: want[k]}
	}

	// Owner A (token 7): small and large batches.
	const tokenA, tokenB, tokenC = 7, 9, 11
	a := openWriter(t, t.TempDir(), ns, id)
	last, err := logs[0].Takeover(ctx, ns, id, tokenA, 0)
	if err != nil {
		t.Fatal(err)
	}
	var appended [][]byte
	for _, d := range []WALDelta{
		a.commit(entry("small0", 10)),
		a.commit(entry("big1", 64<<10)),
		a.commit(entry("small2", 100)),
		a.commit(entry("big3a", 100<<10), entry("big3b", 100<<10), entry("big3c", 1)),
	} {
		if last, err = logs[0].Append(ctx, ns, id, tokenA, last, d); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, encodeDelta(d))
	}
	st, err := c.Nodes[1].JetStream().Stream(ctx, LogStreamName(ns))
	if err != nil {
		t.Fatal(err)
	}
	headers := subjectParts(t, ctx, st, subj)
	// 64 KiB and 200 KiB of values need at least 16 and 50 parts; the last part of the
	// last batch closes it.
	end := headers[len(headers)-1]
	if i, n, err := parsePart(end); len(headers) < 70 || err != nil || i != n {
		t.Fatalf("%d messages for 4 batches and a takeover, the last with part %q", len(headers), end)
	}

	t.Run("replay byte-exact", func(t *testing.T) {
		got, replayed := replayAll(t, ctx, logs[1], t.TempDir(), ns, id)
		if replayed != last {
			t.Fatalf("replay ended at %d, want %d", replayed, last)
		}
		if len(got) != len(appended) {
			t.Fatalf("replay applied %d batches, want %d", len(got), len(appended))
		}
		for i := range got {
			if !bytes.Equal(got[i], appended[i]) {
				t.Fatalf("batch %d: replayed %d bytes differ from the %d appended", i, len(got[i]), len(appended[i]))
			}
		}
	})

	// A dies after two of the parts of its next batch.
	torn := a.commit(entry("torn", 50<<10))
	delete(want, "torn")
	parts := splitRecord(encodeDelta(torn), partTestBytes)
	if len(parts) < 3 {
		t.Fatalf("torn batch of %d parts", len(parts))
	}
	s0, err := logs[0].stream(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	tornLast := last
	for i := range 2 {
		if tornLast, err = logs[0].publish(ctx, s0, ns, id, tokenA, tornLast, kindBatch, formatPart(i+1, len(parts)), parts[i]); err != nil {
			t.Fatal(err)
		}
	}

	// B restores: the torn batch is skipped, its parts counted; B takes over after them.
	bdir := t.TempDir()
	got, replayed := replayAll(t, ctx, logs[1], bdir, ns, id)
	if replayed != tornLast || len(got) != len(appended) {
		t.Fatalf("replay with a torn tail: %d batches up to %d, want %d up to %d", len(got), replayed, len(appended), tornLast)
	}
	lastB, err := logs[1].Takeover(ctx, ns, id, tokenB, replayed)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("stale owner refused before its first part", func(t *testing.T) {
		before := len(subjectParts(t, ctx, st, subj))
		d := a.commit(entry("stale", 30<<10))
		delete(want, "stale")
		if _, err := logs[0].Append(ctx, ns, id, tokenA, tornLast, d); !errors.Is(err, ErrFenced) {
			t.Fatalf("stale multi-part append: got %v, want ErrFenced", err)
		}
		if after := len(subjectParts(t, ctx, st, subj)); after != before {
			t.Fatalf("stale append stored %d messages", after-before)
		}
	})

	// B writes on the database it restored.
	b := openWriter(t, bdir, ns, id)
	for _, d := range []WALDelta{b.commit(entry("bbig", 40<<10)), b.commit(entry("bsmall", 5))} {
		if lastB, err = logs[1].Append(ctx, ns, id, tokenB, lastB, d); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, encodeDelta(d))
	}

	t.Run("stale owner refused between parts", func(t *testing.T) {
		d := b.commit(entry("btorn", 20<<10))
		delete(want, "btorn")
		parts := splitRecord(encodeDelta(d), partTestBytes)
		s1, err := logs[1].stream(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		p1, err := logs[1].publish(ctx, s1, ns, id, tokenB, lastB, kindBatch, formatPart(1, len(parts)), parts[0])
		if err != nil {
			t.Fatal(err)
		}
		// C restores meanwhile and takes over after B's first part.
		if _, replayed := replayAll(t, ctx, logs[2], t.TempDir(), ns, id); replayed != p1 {
			t.Fatalf("C replayed up to %d, want %d", replayed, p1)
		}
		if _, err := logs[2].Takeover(ctx, ns, id, tokenC, p1); err != nil {
			t.Fatal(err)
		}
		if _, err := logs[1].publish(ctx, s1, ns, id, tokenB, p1, kindBatch, formatPart(2, len(parts)), parts[1]); !errors.Is(err, ErrFenced) {
			t.Fatalf("stale owner's second part: got %v, want ErrFenced", err)
		}
	})

	t.Run("replay after torn batches and takeovers", func(t *testing.T) {
		dir := t.TempDir()
		got, _ := replayAll(t, ctx, logs[2], dir, ns, id)
		if len(got) != len(appended) {
			t.Fatalf("replay applied %d batches, want %d", len(got), len(appended))
		}
		for i := range got {
			if !bytes.Equal(got[i], appended[i]) {
				t.Fatalf("batch %d: replayed %d bytes differ from the %d appended", i, len(got[i]), len(appended[i]))
			}
		}
		checkValues(t, dir, ns, id, want)
	})
}
