package queue

import (
	"context"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
)

// BenchmarkSQLiteSend measures durable sends of one message and of batches of 100 (each
// send is one fsync'ed transaction); ns/op and allocs/op are per send call.
func BenchmarkSQLiteSend(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(map[int]string{1: "one", 100: "batch100"}[n], func(b *testing.B) {
			s, err := OpenSQLite(context.Background(), b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			q, _ := s.Queue(context.Background(), "bench")
			msgs := make([]Message, n)
			for i := range msgs {
				msgs[i] = Message{Body: make([]byte, 256), ContentType: "bytes"}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := q.Send(context.Background(), msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkSQLiteConsume measures receiving a batch of 100 messages and acknowledging it
// (two transactions); ns/op and allocs/op are per batch.
func BenchmarkSQLiteConsume(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	q, _ := s.Queue(ctx, "bench")
	msgs := make([]Message, 100)
	for i := range msgs {
		msgs[i] = Message{Body: make([]byte, 256)}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if err := q.Send(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		ds, err := q.Receive(ctx, 100, 0, time.Minute)
		if err != nil || len(ds) != 100 {
			b.Fatalf("received %d: %v", len(ds), err)
		}
		if err := q.Ack(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSQLiteSendConcurrent measures single-message sends from 16 goroutines per CPU, as
// concurrent requests make them: group commit puts the waiting sends in one transaction.
func BenchmarkSQLiteSendConcurrent(b *testing.B) {
	s, err := OpenSQLite(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	q, _ := s.Queue(context.Background(), "bench")
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		msgs := []Message{{Body: make([]byte, 256)}}
		for pb.Next() {
			if err := q.Send(context.Background(), msgs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkJetStreamSend measures sends of batches of 100 to a queue on a one-node
// embedded cluster; ns/op and allocs/op are per batch.
func BenchmarkJetStreamSend(b *testing.B) {
	c := clustertest.Start(b, 1)
	q, _ := NewJetStreamStore(c.Nodes[0]).Queue(context.Background(), "bench")
	msgs := make([]Message, 100)
	for i := range msgs {
		msgs[i] = Message{Body: make([]byte, 256)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Send(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkJetStreamConsume measures receiving a batch of 100 messages and acknowledging
// each (a confirmed acknowledgement per message) on a one-node embedded cluster.
func BenchmarkJetStreamConsume(b *testing.B) {
	ctx := context.Background()
	c := clustertest.Start(b, 1)
	q, _ := NewJetStreamStore(c.Nodes[0]).Queue(ctx, "bench")
	msgs := make([]Message, 100)
	for i := range msgs {
		msgs[i] = Message{Body: make([]byte, 256)}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if err := q.Send(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var ds []*Delivery
		for len(ds) < 100 {
			got, err := q.Receive(ctx, 100-len(ds), 0, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			ds = append(ds, got...)
		}
		if err := q.Ack(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}
