package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustQueue(t *testing.T, s Store, name string) Queue {
	t.Helper()
	q, err := s.Queue(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func sendN(t *testing.T, q Queue, n int) {
	t.Helper()
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Body: []byte(fmt.Sprint(i)), ContentType: "text"}
	}
	if err := q.Send(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

func TestSendReceiveAck(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	q := mustQueue(t, s, "jobs")
	sendN(t, q, 5)
	ds, err := q.Receive(ctx, 3, time.Hour, time.Minute)
	if err != nil || len(ds) != 3 {
		t.Fatalf("receive: %d messages, %v; want 3", len(ds), err)
	}
	for i, d := range ds {
		if string(d.Body) != fmt.Sprint(i) || d.Attempts != 1 || d.ContentType != "text" || len(d.ID) != 32 {
			t.Fatalf("message %d: got %+v", i, d)
		}
	}
	if err := q.Ack(ctx, ds); err != nil {
		t.Fatal(err)
	}
	// Fewer than max: returned after the batch timeout (zero here).
	rest, err := q.Receive(ctx, 10, 0, time.Minute)
	if err != nil || len(rest) != 2 || string(rest[0].Body) != "3" {
		t.Fatalf("rest: %v %v", rest, err)
	}
	if n, _ := q.Backlog(ctx); n != 2 {
		t.Fatalf("backlog %d, want 2 (leased messages count)", n)
	}
	q.Ack(ctx, rest)
	if n, _ := q.Backlog(ctx); n != 0 {
		t.Fatalf("backlog %d, want 0", n)
	}
}

func TestReceiveWaitsForSend(t *testing.T) {
	s := openTest(t, t.TempDir())
	q := mustQueue(t, s, "jobs")
	got := make(chan []*Delivery, 1)
	go func() {
		ds, _ := q.Receive(context.Background(), 1, time.Hour, time.Minute)
		got <- ds
	}()
	sendN(t, q, 1)
	select {
	case ds := <-got:
		if len(ds) != 1 {
			t.Fatalf("got %d messages", len(ds))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receive did not wake on send")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Receive(ctx, 1, 0, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled receive: %v", err)
	}
}

func TestRestartRedeliversUnacked(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	q := mustQueue(t, s, "jobs")
	sendN(t, q, 4)
	ds, _ := q.Receive(ctx, 4, 0, time.Hour)
	q.Ack(ctx, ds[:2])
	s.Close()
	s = openTest(t, dir)
	q = mustQueue(t, s, "jobs")
	ds, err := q.Receive(ctx, 10, 0, time.Hour)
	if err != nil || len(ds) != 2 || string(ds[0].Body) != "2" || ds[0].Attempts != 2 {
		t.Fatalf("after restart: %+v %v; want messages 2 and 3 at attempt 2", ds, err)
	}
}

func TestRetryDelayAndDeadLetter(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }
	q, dlq := mustQueue(t, s, "jobs"), mustQueue(t, s, "jobs-dlq")
	sendN(t, q, 1)
	cfg := ConsumerConfig{MaxRetries: 1, RetryDelay: time.Minute, DeadLetter: dlq}
	cfg.setDefaults()
	for attempt := 1; attempt <= 2; attempt++ {
		ds, err := q.Receive(ctx, 1, 0, time.Hour)
		if err != nil || len(ds) != 1 || ds[0].Attempts != attempt {
			t.Fatalf("attempt %d: %+v %v", attempt, ds, err)
		}
		b := &Batch{Queue: "jobs", Messages: ds, q: q, cfg: &cfg, state: make([]uint8, 1), delay: make([]time.Duration, 1)}
		if err := b.Settle(ctx, errors.New("handler failed")); err != nil {
			t.Fatal(err)
		}
		if attempt == 1 {
			// Not deliverable before the retry delay.
			tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			if ds, _ := q.Receive(tctx, 1, 0, time.Hour); len(ds) != 0 {
				t.Fatalf("delivered before its retry delay")
			}
			cancel()
			now = now.Add(time.Minute)
		}
	}
	if n, _ := q.Backlog(ctx); n != 0 {
		t.Fatalf("jobs backlog %d, want 0", n)
	}
	ds, err := dlq.Receive(ctx, 1, 0, time.Hour)
	if err != nil || len(ds) != 1 || string(ds[0].Body) != "0" || ds[0].Attempts != 1 {
		t.Fatalf("dead letter queue: %+v %v", ds, err)
	}
	if cfg.Counters.Retried.Load() != 1 || cfg.Counters.DeadLettered.Load() != 1 {
		t.Fatalf("counters: retried %d dead %d", cfg.Counters.Retried.Load(), cfg.Counters.DeadLettered.Load())
	}
}

func TestLimits(t *testing.T) {
	s := openTest(t, t.TempDir())
	q := mustQueue(t, s, "jobs")
	for _, tc := range []struct {
		name string
		msgs []Message
	}{
		{"empty", nil},
		{"too many", make([]Message, MaxSendBatch+1)},
		{"too large", []Message{{Body: make([]byte, MaxMessageBytes+1)}}},
		{"batch too large", []Message{{Body: make([]byte, MaxMessageBytes)}, {Body: make([]byte, MaxMessageBytes)}, {Body: []byte("x")}}},
		{"delay", []Message{{Delay: MaxDelay + time.Second}}},
		{"content type", []Message{{ContentType: strings.Repeat("x", 65)}}},
	} {
		if err := q.Send(context.Background(), tc.msgs); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.name, err)
		}
	}
	for _, name := range []string{"", "-x", "a/b", "../x", strings.Repeat("a", 64)} {
		if _, err := s.Queue(context.Background(), name); !errors.Is(err, ErrInvalid) {
			t.Errorf("queue name %q: got %v, want ErrInvalid", name, err)
		}
	}
	s.maxBacklog = 3
	sendN(t, q, 3)
	if err := q.Send(context.Background(), []Message{{Body: []byte("x")}}); !errors.Is(err, ErrFull) {
		t.Fatalf("over the backlog cap: %v", err)
	}
}

func TestConsumeAcksAndRetries(t *testing.T) {
	s := openTest(t, t.TempDir())
	q := mustQueue(t, s, "jobs")
	sendN(t, q, 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := map[string]int{}
	done := make(chan struct{})
	var counters Counters
	go func() {
		defer close(done)
		Consume(ctx, q, ConsumerConfig{MaxBatchSize: 7, MaxBatchTimeout: -1, MaxRetries: 2, Counters: &counters}, func(ctx context.Context, b *Batch) error {
			for _, d := range b.Messages {
				seen[string(d.Body)]++
			}
			// Odd bodies fail once.
			var again []int
			for i, d := range b.Messages {
				var n int
				fmt.Sscan(string(d.Body), &n)
				if n%2 == 1 && d.Attempts == 1 {
					again = append(again, i)
				}
			}
			if err := b.Retry(again, 0); err != nil {
				return err
			}
			if n, _ := q.Backlog(ctx); n == int64(len(b.Messages)-len(again)) && len(again) == 0 {
				cancel()
			}
			return nil
		})
	}()
	<-done
	for i := range 20 {
		want := 1
		if i%2 == 1 {
			want = 2
		}
		if seen[fmt.Sprint(i)] != want {
			t.Fatalf("message %d delivered %d times, want %d", i, seen[fmt.Sprint(i)], want)
		}
	}
	if counters.Acked.Load() != 20 || counters.Retried.Load() != 10 || counters.Delivered.Load() != 30 {
		t.Fatalf("counters: acked %d retried %d delivered %d", counters.Acked.Load(), counters.Retried.Load(), counters.Delivered.Load())
	}
}

// TestSQLiteByteCap: a queue holds at most maxBytes of message bodies; a send beyond fails
// with ErrFull, acknowledgements and moves to a dead letter queue free their bytes, and the
// count survives a reopen.
func TestSQLiteByteCap(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	s.maxBytes = 100
	q, dlq := mustQueue(t, s, "jobs"), mustQueue(t, s, "dlq")
	ctx := context.Background()
	send := func(q Queue, n int) error {
		return q.Send(ctx, []Message{{Body: make([]byte, n)}})
	}
	if err := send(q, 60); err != nil {
		t.Fatal(err)
	}
	if err := send(q, 41); !errors.Is(err, ErrFull) {
		t.Fatalf("over the byte cap: %v, want ErrFull", err)
	}
	if err := send(q, 40); err != nil {
		t.Fatalf("up to the byte cap: %v", err)
	}
	ds, err := q.Receive(ctx, 10, 0, time.Minute)
	if err != nil || len(ds) != 2 {
		t.Fatalf("receive: %d %v", len(ds), err)
	}
	// The 60 bytes leave (acknowledged), the 40 move to dlq.
	big, small := ds[0], ds[1]
	if len(big.Body) != 60 {
		big, small = small, big
	}
	if err := q.Ack(ctx, []*Delivery{big}); err != nil {
		t.Fatal(err)
	}
	if err := q.(*sqliteQueue).MoveTo(ctx, []*Delivery{small}, dlq); err != nil {
		t.Fatal(err)
	}
	if err := send(q, 100); err != nil {
		t.Fatalf("after the acknowledgement and the move: %v", err)
	}
	if err := send(dlq, 61); !errors.Is(err, ErrFull) {
		t.Fatalf("dead letter queue over its byte cap: %v, want ErrFull", err)
	}
	s.Close()

	s = openTest(t, dir)
	s.maxBytes = 100
	if err := send(mustQueue(t, s, "jobs"), 1); !errors.Is(err, ErrFull) {
		t.Fatalf("after a reopen, over the byte cap: %v, want ErrFull", err)
	}
	if err := send(mustQueue(t, s, "dlq"), 60); err != nil {
		t.Fatalf("after a reopen, within the byte cap: %v", err)
	}
}
