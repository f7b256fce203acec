package clustered

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/durable"
)

// TestLazyAlarmsWithoutCluster: with NATS unreachable, the index is handed out at once
// (a namespace can be created, a worker deployed), reports no alarm, and its writes fail
// within their context with cluster.ErrUnavailable; Close stops the opener.
func TestLazyAlarmsWithoutCluster(t *testing.T) {
	nc, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l := newLazyAlarms(js, 1, "ns", slog.New(slog.DiscardHandler))
	woken := make(chan struct{}, 1)
	stop := l.Notify(func() { woken <- struct{}{} })
	defer stop()
	if _, ok, err := l.Next(context.Background()); ok || err != nil {
		t.Fatalf("Next before the index is open: ok %v, err %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = l.Set(ctx, durable.IDFromName("ns", "x"), time.Now())
	if !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("Set without a cluster: %v, want cluster.ErrUnavailable", err)
	}
	l.Defer(durable.IDFromName("ns", "x"), time.Now(), time.Now().Add(time.Second)) // no effect, no panic
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.index(context.Background()); !errors.Is(err, durable.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	select {
	case <-woken:
		t.Fatal("woken although the index never opened")
	default:
	}
}
