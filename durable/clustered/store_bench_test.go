package clustered

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// BenchmarkReplicatedCommit commits small batches (one 16-byte value) to one object: on
// the replicated store of a 3-node cluster (local SQLite commit, then the append to the
// log acknowledged by a quorum of the three replicas; snapshots every 256 batches in the
// background), the same with a 16 MiB database (each snapshot copies and uploads 16 MiB),
// and, for comparison, on the node's SQLite store alone. The cluster is started once; the
// difference is the replication latency a response waits for. max-ns/op reports the
// slowest commit, append-ns/op the mean time from the start of the append to the log to its
// acknowledgement (OnReplicate).
func BenchmarkReplicatedCommit(b *testing.B) {
	c := clustertest.Start(b, 3)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := NewPlacement(c.Nodes[0], LeaseOptions{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	store := NewStore(b.TempDir(), p, NewLog(c.Nodes[0]))
	var snapshots, appendNs atomic.Int64
	store.OnReplicate = func(d time.Duration, _ int) { appendNs.Add(int64(d)) }
	store.snapshotted = func(_ string, _ durable.ID, _ uint64, err error) {
		if err == nil {
			snapshots.Add(1)
		}
	}
	b.Cleanup(func() { store.Close() })
	local := durable.OpenSQLite(b.TempDir())
	b.Cleanup(func() { local.Close() })
	run := 0
	for _, bc := range []struct {
		name    string
		store   durable.Store
		prefill int // 2 MiB values written before the timer starts
	}{{"replicated", store, 0}, {"replicated-16MiB", store, 8}, {"sqlite", local, 0}} {
		b.Run(bc.name, func(b *testing.B) {
			run++
			const ns = "bench"
			id := durable.IDFromName(ns, strconv.Itoa(run))
			if bc.store == store {
				l, err := p.Acquire(ctx, ns, id)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Release()
			}
			obj, err := bc.store.Open(ctx, ns, id)
			if err != nil {
				b.Fatal(err)
			}
			defer obj.Close()
			for i := range bc.prefill {
				txn, err := obj.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				big := make([]byte, durable.MaxValueBytes)
				big[0] = byte(i)
				if err := txn.Put([]durable.Entry{{Key: "big" + strconv.Itoa(i), Value: big}}); err != nil {
					b.Fatal(err)
				}
				if err := txn.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			value := []byte("01234567-16bytes")
			var slowest time.Duration
			snapshots.Store(0)
			appendNs.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				txn, err := obj.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				// A new value each time: SQLite writes no page for a value that is unchanged.
				binary.BigEndian.PutUint64(value, uint64(i))
				if err := txn.Put([]durable.Entry{{Key: "k" + strconv.Itoa(i%64), Value: value}}); err != nil {
					b.Fatal(err)
				}
				if err := txn.Commit(); err != nil {
					b.Fatal(err)
				}
				slowest = max(slowest, time.Since(start))
			}
			b.ReportMetric(float64(slowest.Nanoseconds()), "max-ns/op")
			b.ReportMetric(float64(snapshots.Swap(0)), "snapshots")
			b.ReportMetric(float64(appendNs.Swap(0))/float64(b.N), "append-ns/op")
		})
	}
}
