package worker_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/queue"
	"github.com/verge-edge/verge/worker"
)

// drain receives messages of q until it has n, and returns their bodies sorted.
func drain(t *testing.T, q queue.Queue, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		ds, err := q.Receive(ctx, n-len(got), 0, time.Hour)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		for _, d := range ds {
			got = append(got, string(d.Body))
		}
		q.Ack(ctx, ds)
	}
	slices.Sort(got)
	return got
}

func serveOK(t *testing.T, w *worker.Worker, method, target, body string) *recorder {
	t.Helper()
	rec, err := serve(t, w, method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestQueuesProduceConsumeRetryDeadLetter(t *testing.T) {
	dir := t.TempDir()
	qs, err := queue.OpenSQLite(context.Background(), filepath.Join(dir, "queues"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qs.Close() })
	e := newEnv(t, dir, worker.Services{Queues: qs})
	w := e.deploy(t, worker.Config{
		Name: "q", Module: testwasm.Build(t, "worker/testdata/queues"),
		Queues: map[string]string{"JOBS": "jobs", "OUT": "out"},
		Consumers: []worker.QueueConsumer{{
			Queue: "jobs", MaxBatchSize: 10, MaxBatchTimeout: -1, MaxRetries: 1, DeadLetterQueue: "jobs-dlq",
		}},
	})
	out, _ := qs.Queue(context.Background(), "out")
	dlq, _ := qs.Queue(context.Background(), "jobs-dlq")

	rec := serveOK(t, w, "POST", "/send", "a b retry")
	rec.check(t, 204, "")
	// a and b acknowledged once; retry delivered twice (max_retries 1), then dead-lettered.
	if got, want := drain(t, out, 4), []string{"a 1", "b 1", "retry 1", "retry 2"}; !slices.Equal(got, want) {
		t.Fatalf("deliveries %q, want %q", got, want)
	}
	if got := drain(t, dlq, 1); got[0] != "retry" {
		t.Fatalf("dead letter queue: %q", got)
	}
	// A failing handler and a crashing one: their messages are retried, then dead-lettered.
	serveOK(t, w, "POST", "/send", "fail").check(t, 204, "")
	if got, want := drain(t, out, 2), []string{"fail 1", "fail 2"}; !slices.Equal(got, want) {
		t.Fatalf("failing handler deliveries %q, want %q", got, want)
	}
	serveOK(t, w, "POST", "/send", "crash").check(t, 204, "")
	if got, want := drain(t, out, 2), []string{"crash 1", "crash 2"}; !slices.Equal(got, want) {
		t.Fatalf("crashing handler deliveries %q, want %q", got, want)
	}
	if got, want := drain(t, dlq, 2), []string{"crash", "fail"}; !slices.Equal(got, want) {
		t.Fatalf("dead letter queue %q, want %q", got, want)
	}

	// What a worker must not do.
	serveOK(t, w, "GET", "/hostile", "").check(t, 200, "unbound=4 ack=4 big=2")
	serveOK(t, w, "POST", "/send", "forge").check(t, 204, "")
	if got, want := drain(t, out, 2), []string{"forge 1", "forged=2"}; !slices.Equal(got, want) {
		t.Fatalf("forged acknowledgement: %q, want %q", got, want)
	}

	var st worker.QueueStats
	for _, s := range e.reg.QueueStats(context.Background()) {
		if s.Queue == "jobs" {
			st = s
		}
	}
	if st.Sent != 6 || st.Acked != 3 || st.Retried != 3 || st.DeadLettered != 3 || st.Delivered != 9 || st.Backlog != 0 {
		t.Fatalf("jobs stats %+v", st)
	}
}

// BenchmarkWorkerQueueSend measures a request whose worker sends 10 messages in one
// SendBatch (durable before the response), through the ABI; allocs/op are the host's and
// the store's per request.
func BenchmarkWorkerQueueSend(b *testing.B) {
	dir := b.TempDir()
	qs, err := queue.OpenSQLite(context.Background(), filepath.Join(dir, "queues"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { qs.Close() })
	e := newEnv(b, dir, worker.Services{Queues: qs})
	w := e.deploy(b, worker.Config{
		Name: "q", Module: testwasm.Build(b, "worker/testdata/queues"),
		Queues: map[string]string{"JOBS": "jobs"},
	})
	body := "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9"
	b.ReportAllocs()
	for b.Loop() {
		rec, err := serve(b, w, "POST", "/send", body)
		if err != nil || rec.status != 204 {
			b.Fatalf("send: %v %v", rec, err)
		}
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "msgs/s")
}

// TestQueueBatchWaitForInstanceIsBounded: a batch whose worker has no free instance waits
// for one at most its wall time limit (bounded further by the lease's margin), then fails
// Overloaded (its messages are retried), rather than waiting without bound and running
// after its lease ended. A change of the wall time limit restarts the consumer with a
// lease that follows it.
func TestQueueBatchWaitForInstanceIsBounded(t *testing.T) {
	dir := t.TempDir()
	qs, err := queue.OpenSQLite(context.Background(), filepath.Join(dir, "queues"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qs.Close() })
	e := newEnv(t, dir, worker.Services{Queues: qs})
	cfg := worker.Config{
		Name: "q", Module: testwasm.Build(t, "worker/testdata/queues"),
		Queues:    map[string]string{"JOBS": "jobs", "OUT": "out"},
		Consumers: []worker.QueueConsumer{{Queue: "jobs"}},
		Limits:    worker.Limits{WallTime: time.Second, MaxInstances: 1},
	}
	w := e.deploy(t, cfg)
	if got, want := worker.ConsumerLease(w, "jobs"), 31*time.Second; got != want {
		t.Fatalf("lease %v, want %v (wall time + 30s)", got, want)
	}

	release := worker.HoldInstances(w)
	done := make(chan error, 1)
	go func() { done <- worker.DeliverBatch(context.Background(), w, &queue.Batch{Queue: "jobs"}) }()
	select {
	case err := <-done:
		var we *worker.Error
		if !errors.As(err, &we) || we.Kind != worker.Overloaded {
			t.Fatalf("batch without an instance: %v, want Overloaded", err)
		}
	case <-time.After(60 * time.Second):
		release()
		t.Fatal("a batch without a free instance waited past its wall time (and its lease)")
	}
	release()

	cfg.Limits.WallTime = 2 * time.Second
	w = e.deploy(t, cfg)
	if got, want := worker.ConsumerLease(w, "jobs"), 32*time.Second; got != want {
		t.Fatalf("lease after the wall time changed: %v, want %v", got, want)
	}
}
