package worker_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/worker"
)

// hopRouter is a worker.ObjectRouter that delivers each Durable Object request as a
// cluster hop does: the payload copied, the handler run on a context of its own (only the
// caller's cancellation carries over), none of the caller's context values.
type hopRouter struct {
	mu       sync.Mutex
	handlers map[string]func(context.Context, durable.ID, []byte) ([]byte, error)
}

func (r *hopRouter) Call(ctx context.Context, ns string, id durable.ID, payload []byte) ([]byte, error) {
	r.mu.Lock()
	h := r.handlers[ns]
	r.mu.Unlock()
	hctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return h(hctx, id, bytes.Clone(payload))
}

func (r *hopRouter) Handle(ns string, h func(context.Context, durable.ID, []byte) ([]byte, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handlers == nil {
		r.handlers = map[string]func(context.Context, durable.ID, []byte) ([]byte, error){}
	}
	if h == nil {
		delete(r.handlers, ns)
		return
	}
	r.handlers[ns] = h
}

// TestServiceDepthCrossesObjectRouter: a worker calling an object through the cluster's
// router (the object on another node), whose object calls the worker again through a
// service binding, and so on, is cut at MaxServiceDepth as on one node: the depth of the
// chain travels with the forwarded request, set by the host.
func TestServiceDepthCrossesObjectRouter(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{Router: &hopRouter{}})
	cfg := objectsConfig(t, 8, false)
	cfg.Services = map[string]string{"SELF": "objects"}
	cfg.Limits.MaxInstances = 32
	// Without the depth the chain would grow until it ran out of instances or wall time.
	cfg.Limits.WallTime = 10 * time.Second
	w := e.deploy(t, cfg)
	rec := serveWithin(t, w, "/o/loop0/loop?n=0")
	if got := rec.body.String(); rec.status != 502 || !strings.Contains(got, "chain of service calls") {
		t.Fatalf("endless chain through objects: %d %q, want 502 naming the chain of service calls", rec.status, got)
	}
}
