package worker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/workerabi"
)

// containerOp serves the container operations (workerabi.OpContainerStart to
// OpContainerFetchBody) of a Durable Object invocation: they act on the container of the
// invocation's own object, never another's.
func (inv *invocation) containerOp(op uint32, arg []byte) (uint32, []byte) {
	v := inv.inst.v
	if op == workerabi.OpContainerExit {
		x := inv.cexit
		if x == nil {
			return fail(workerabi.StatusUnavailable, errors.New("not a container exit invocation"))
		}
		inv.e.U32(uint32(int32(x.Code)))
		inv.e.Str(x.Reason)
		return workerabi.StatusOK, inv.e.B
	}
	m := v.w.reg.svc.Containers
	if inv.turn == nil || inv.class == "" {
		return fail(workerabi.StatusUnavailable, errors.New("containers are reached from a Durable Object of a class with a container"))
	}
	if m == nil || !m.Has(v.w.name, inv.class) {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("class %s has no container (config field containers)", inv.class))
	}
	worker, class, object := v.w.name, inv.class, inv.objID
	switch op {
	case workerabi.OpContainerStart:
		var o containers.StartOptions
		d := workerabi.Decoder{B: arg}
		n := d.Count(8)
		if n > containers.MaxStartEnv {
			return fail(workerabi.StatusLimit, fmt.Errorf("container start: %d environment variables exceed %d", n, containers.MaxStartEnv))
		}
		if n > 0 {
			o.Env = make(map[string]string, n)
		}
		for range n {
			k, val := d.Str(), d.Str()
			o.Env[k] = val
		}
		if d.U8() == 1 {
			na := d.Count(4)
			if na > containers.MaxStartArgs {
				return fail(workerabi.StatusLimit, fmt.Errorf("container start: %d arguments exceed %d", na, containers.MaxStartArgs))
			}
			o.Args = make([]string, 0, na)
			for range na {
				o.Args = append(o.Args, d.Str())
			}
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := m.Start(inv.io(), worker, class, object, o); err != nil {
			return fail(containerStatus(err), err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpContainerFetch, workerabi.OpContainerFetchBody:
		addr, release, err := m.Acquire(inv.io(), worker, class, object)
		if err != nil {
			return fail(containerStatus(err), fmt.Errorf("container fetch: %w", err))
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			release()
			return fail(workerabi.StatusInternal, err)
		}
		if u := inv.upgrade(); u != nil && isWebSocketRequest(arg) {
			// The client's WebSocket handshake, passed on to the container.
			return inv.containerTunnel(arg, ap, u, release, op == workerabi.OpContainerFetch)
		}
		return inv.fetchStreamTo(arg, &ap, release, op == workerabi.OpContainerFetchBody)
	case workerabi.OpContainerState:
		s, err := m.State(worker, class, object)
		if err != nil {
			return fail(containerStatus(err), err)
		}
		inv.e.U8(uint8(s))
		return workerabi.StatusOK, inv.e.B
	case workerabi.OpContainerStop:
		if err := m.Stop(inv.io(), worker, class, object); err != nil {
			return fail(containerStatus(err), err)
		}
		return workerabi.StatusOK, nil
	}
	return fail(workerabi.StatusUnavailable, fmt.Errorf("unknown host operation %d", op))
}

// containerStatus is the ABI status of a failed container operation.
func containerStatus(err error) uint32 {
	switch {
	case errors.Is(err, containers.ErrLimit):
		return workerabi.StatusLimit
	case errors.Is(err, containers.ErrNoClass), errors.Is(err, containers.ErrClosed):
		return workerabi.StatusUnavailable
	}
	return workerabi.StatusInternal
}

// ContainerExited tells the object whose container exited (containers.Options.OnExit):
// it runs the object with workerabi.KindContainerExit. Exits of a shutdown or redeploy are
// not delivered: the object's worker is going away.
func (r *Registry) ContainerExited(ctx context.Context, x containers.Exit) error {
	if x.Reason == "shutdown" {
		return nil
	}
	w := r.Get(x.Worker)
	if w == nil {
		return nil
	}
	cur := w.cur.Load()
	if cur == nil {
		return nil
	}
	var binding string
	var b *doBinding
	for name, db := range cur.durable {
		if db.class == x.Class && (b == nil || name < binding) {
			binding, b = name, db
		}
	}
	if b == nil {
		return nil
	}
	id, err := b.ns.ParseID(x.Object)
	if err != nil {
		return err
	}
	return b.ns.Do(ctx, id, func(t *durable.Turn) error {
		_, _, err := w.invokeObject(ctx, t, binding, b.class, workerabi.KindContainerExit, 0, func(inv *invocation) {
			inv.cexit = &x
		})
		return err
	})
}

// setContainers gives worker name the container classes cs (none when nil); instances of
// the previous ones stop.
func (r *Registry) setContainers(name string, cs []containers.ClassConfig) {
	if m := r.svc.Containers; m != nil {
		if err := m.SetClasses(name, cs); err != nil {
			r.svc.Logger.Warn("containers: setting the worker's classes", "worker", name, "err", err)
		}
	}
}
