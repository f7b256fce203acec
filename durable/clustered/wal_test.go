package clustered

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge/durable"
)

// TestWALReplay commits batches to an object's SQLite database, reads each batch's pages
// from the WAL and applies them to a replica file; the replica must hold the same keys and
// SQL rows. Large values push the WAL past SQLite's automatic checkpoint, so the WAL
// restarts (new salts) during the test and the reader must follow it.
func TestWALReplay(t *testing.T) {
	ctx := context.Background()
	src, dst := t.TempDir(), t.TempDir()
	st := durable.OpenSQLite(src)
	defer st.Close()
	id := durable.IDFromName("ns", "x")
	obj, err := st.Open(ctx, "ns", id)
	if err != nil {
		t.Fatal(err)
	}
	walPath := filepath.Join(src, "ns", id.String()+".sqlite-wal")
	replica := filepath.Join(dst, "ns", id.String()+".sqlite")
	if err := os.MkdirAll(filepath.Dir(replica), 0o700); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	gens := map[WALPosition]bool{}
	var pos WALPosition
	big := bytes.Repeat([]byte("v"), durable.MaxValueBytes)
	const batches = 12
	for b := range batches {
		txn, err := obj.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var es []durable.Entry
		for i := range 5 {
			e := durable.Entry{Key: fmt.Sprintf("k%02d-%d", b, i), Value: []byte(fmt.Sprintf("value %d/%d", b, i))}
			es = append(es, e)
			want[e.Key] = e.Value
		}
		if b%2 == 1 {
			big[0] = byte('a' + b)
			e := durable.Entry{Key: fmt.Sprintf("big%02d", b), Value: bytes.Clone(big)}
			es = append(es, e)
			want[e.Key] = e.Value
		}
		if err := txn.Put(es); err != nil {
			t.Fatal(err)
		}
		if b > 0 {
			k := fmt.Sprintf("k%02d-0", b-1)
			if _, err := txn.Delete([]string{k}); err != nil {
				t.Fatal(err)
			}
			delete(want, k)
		}
		if _, err := txn.SQL("CREATE TABLE IF NOT EXISTS t (n INTEGER)", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := txn.SQL("INSERT INTO t (n) VALUES (?)", []durable.Value{int64(b)}); err != nil {
			t.Fatal(err)
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		d, next, err := ReadWAL(walPath, pos)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Pages) == 0 {
			t.Fatalf("batch %d: no pages read from the WAL", b)
		}
		if err := ApplyWAL(replica, d); err != nil {
			t.Fatal(err)
		}
		pos = next
		gens[WALPosition{Salt1: next.Salt1, Salt2: next.Salt2}] = true
		// Nothing new: an empty delta at the same position.
		if d, again, err := ReadWAL(walPath, pos); err != nil || len(d.Pages) != 0 || again != pos {
			t.Fatalf("batch %d: second read: %d pages, %+v, %v", b, len(d.Pages), again, err)
		}
	}
	if len(gens) < 2 {
		t.Fatalf("the WAL never restarted (%d generation): the test did not cover a checkpoint", len(gens))
	}
	obj.Close()

	checkValues(t, dst, "ns", id, want, func(txn durable.Txn) {
		r, err := txn.SQL("SELECT count(*), sum(n) FROM t", nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, sum := r.Rows[0][0], r.Rows[0][1]; n != int64(batches) || sum != int64(batches*(batches-1)/2) {
			t.Fatalf("replica rows: count %v, sum %v", n, sum)
		}
	})
}
