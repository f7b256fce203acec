package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
)

// TestJetStreamClusterLosesNoMessage runs a queue on a 3-node cluster: messages sent
// through one node are consumed through another, with a retried message dead-lettered and
// a delayed one delivered after its delay, while the third node is killed mid-run. Every
// message is consumed, none after its acknowledgement was recorded.
func TestJetStreamClusterLosesNoMessage(t *testing.T) {
	c := clustertest.Start(t, 3)
	ctx := context.Background()
	prod, cons := NewJetStreamStore(c.Nodes[0]), NewJetStreamStore(c.Nodes[1])
	pq, err := prod.Queue(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	const total = 500
	for start := 0; start < total; start += 100 {
		msgs := make([]Message, 100)
		for i := range msgs {
			msgs[i] = Message{Body: []byte(fmt.Sprint(start + i)), ContentType: "text"}
		}
		if err := pq.Send(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	sentAt := time.Now()
	if err := pq.Send(ctx, []Message{{Body: []byte("delayed"), Delay: time.Second}, {Body: []byte("poison")}}); err != nil {
		t.Fatal(err)
	}
	if n, err := pq.Backlog(ctx); err != nil || n != total+2 {
		t.Fatalf("backlog %d, %v; want %d", n, err, total+2)
	}

	cq, _ := cons.Queue(ctx, "jobs")
	dlq, _ := cons.Queue(ctx, "jobs-dlq")
	var mu sync.Mutex
	acked := map[string]bool{}
	consumed := map[string]bool{}
	var violations []string
	var delayedAfter time.Duration
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	killed := false
	go func() {
		defer close(done)
		Consume(cctx, cq, ConsumerConfig{MaxBatchSize: 50, MaxBatchTimeout: -1, MaxRetries: 1, DeadLetter: dlq, Lease: 3 * time.Second},
			func(ctx context.Context, b *Batch) error {
				var ok []int
				for i, d := range b.Messages {
					mu.Lock()
					if acked[d.ID] {
						violations = append(violations, fmt.Sprintf("%s (%s) delivered after its acknowledgement", d.ID, d.Body))
					}
					if string(d.Body) == "delayed" {
						delayedAfter = time.Since(sentAt)
					}
					mu.Unlock()
					if string(d.Body) == "poison" {
						b.Retry([]int{i}, 0)
						continue
					}
					ok = append(ok, i)
				}
				if err := b.Ack(ctx, ok); err != nil {
					return err
				}
				mu.Lock()
				for _, i := range ok {
					acked[b.Messages[i].ID] = true
					consumed[string(b.Messages[i].Body)] = true
				}
				n := len(consumed)
				mu.Unlock()
				if n >= 100 && !killed {
					killed = true
					c.Kill(2)
				}
				return nil
			})
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		n := len(consumed)
		mu.Unlock()
		if n == total+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out with %d of %d messages consumed", n, total+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The poison message reaches the dead letter queue.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	ds, err := dlq.Receive(rctx, 1, 0, time.Minute)
	if err != nil || len(ds) != 1 || string(ds[0].Body) != "poison" {
		t.Fatalf("dead letter queue: %v %v", ds, err)
	}
	dlq.Ack(rctx, ds)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	if delayedAfter < time.Second {
		t.Errorf("delayed message delivered %v after its send, want at least 1s", delayedAfter)
	}
	if !killed {
		t.Error("node 3 was not killed")
	}
}

// TestJetStreamByteCap: a send to a queue whose stream holds maxBytes fails with ErrFull
// (the stream itself has no MaxBytes: message schedules rule out discarding new messages).
func TestJetStreamByteCap(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx := context.Background()
	s := NewJetStreamStore(c.Nodes[0])
	s.maxBytes = 1000
	q, err := s.Queue(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, []Message{{Body: make([]byte, 700)}}); err != nil {
		t.Fatal(err)
	}
	q.(*jsQueue).readAt = time.Time{} // read the stream's usage again now
	if err := q.Send(ctx, []Message{{Body: make([]byte, 400)}}); !errors.Is(err, ErrFull) {
		t.Fatalf("over the byte cap: %v, want ErrFull", err)
	}
	if err := q.Send(ctx, []Message{{Body: make([]byte, 50)}}); err != nil {
		t.Fatalf("within the byte cap: %v", err)
	}
}
