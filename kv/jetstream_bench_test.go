package kv

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
)

// BenchmarkKVRead compares a read of a cached key in the JetStream store (one node) with a
// read from the SQLite store, in the same run.
func BenchmarkKVRead(b *testing.B) {
	ctx := context.Background()
	value := []byte("value of some thirty-two bytes..")
	b.Run("sqlite", func(b *testing.B) {
		s, _ := OpenSQLite(b.TempDir())
		defer s.Close()
		n, _ := s.Namespace(ctx, "b")
		n.Put(ctx, "k", value, PutOptions{})
		b.ReportAllocs()
		for b.Loop() {
			if e, err := n.Get(ctx, "k"); err != nil || e == nil {
				b.Fatal(e, err)
			}
		}
	})
	b.Run("jetstream-cache-hit", func(b *testing.B) {
		c := clustertest.Start(b, 1)
		s, w := newStore(b, c.Nodes[0], JetStreamOptions{})
		n := mustNS(b, s, "b")
		w.health(b, "b", true)
		n.Put(ctx, "k", value, PutOptions{})
		b.ReportAllocs()
		for b.Loop() {
			if e, err := n.Get(ctx, "k"); err != nil || e == nil {
				b.Fatal(e, err)
			}
		}
	})
}

// BenchmarkKVCluster measures, on a three-node cluster with three replicas: the latency of
// a Put (acknowledged by JetStream) from one writer, the throughput of 16 concurrent
// writers, and the delay from a Put on node 1 until node 2's watch applied it.
func BenchmarkKVCluster(b *testing.B) {
	ctx := context.Background()
	c := clustertest.Start(b, 3)
	s1, w1 := newStore(b, c.Nodes[0], JetStreamOptions{})
	s2, w2 := newStore(b, c.Nodes[1], JetStreamOptions{})
	n1 := mustNS(b, s1, "bench")
	mustNS(b, s2, "bench")
	w1.health(b, "bench", true)
	w2.health(b, "bench", true)
	value := make([]byte, 256)

	b.Run("put-latency", func(b *testing.B) {
		var lat []time.Duration
		i := 0
		for b.Loop() {
			t0 := time.Now()
			if err := n1.Put(ctx, fmt.Sprint("lat", i%1000), value, PutOptions{}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			i++
		}
		reportPercentiles(b, lat)
	})

	b.Run("put-throughput-16", func(b *testing.B) {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		total := int64(b.N)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > total {
						return
					}
					if err := n1.Put(ctx, fmt.Sprint("tp", i%1000), value, PutOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
	})

	b.Run("propagation", func(b *testing.B) {
		// The delay until node 2's watch applied the revision Put wrote on node 1.
		type arrival struct {
			key string
			at  time.Time
		}
		arrived := make(chan arrival, 1024)
		hook := func(ns, key string, seq uint64) {
			select {
			case arrived <- arrival{key, time.Now()}:
			default:
			}
		}
		w2.extra.Store(&hook)
		defer w2.extra.Store(nil)
		var lat []time.Duration
		i := 0
		for b.Loop() {
			key := fmt.Sprint("prop", i)
			i++
			t0 := time.Now()
			if err := n1.Put(ctx, key, value, PutOptions{}); err != nil {
				b.Fatal(err)
			}
			timeout := time.NewTimer(waitTimeout)
			for done := false; !done; {
				select {
				case a := <-arrived:
					if a.key == key {
						lat = append(lat, a.at.Sub(t0))
						done = true
					}
				case <-timeout.C:
					b.Fatalf("%s never reached node 2", key)
				}
			}
			timeout.Stop()
		}
		reportPercentiles(b, lat)
	})
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}
