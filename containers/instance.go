package containers

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"
)

// instance is one object's instance; its fields are guarded by Manager.mu.
type instance struct {
	c      *class
	object string
	state  State
	proc   Process
	addr   string
	opts   StartOptions
	start  *attempt
	stopCh chan struct{} // closed when a stop finishes
	active int
	last   time.Time
	idle   *time.Timer

	started   time.Time
	crashes   int
	notBefore time.Time
	restart   *time.Timer
}

// attempt is one start; ready is closed when it ends, err set before.
type attempt struct {
	ready chan struct{}
	err   error
}

func (m *Manager) acquire(ctx context.Context, in *instance) (string, func(), error) {
	c := in.c
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return "", nil, ErrClosed
		}
		if m.classes[classKey(c.worker, c.cfg.Class)] != c {
			m.mu.Unlock()
			return "", nil, fmt.Errorf("%w: worker %s, class %s (redeployed)", ErrNoClass, c.worker, c.cfg.Class)
		}
		// The record may have been dropped meanwhile (lookup's pruning of stopped ones):
		// keep one record per object, so that one container runs per object.
		if cur := c.insts[in.object]; cur != in {
			if cur == nil {
				c.insts[in.object] = in
			} else {
				in = cur
			}
		}
		var wait <-chan struct{}
		var a *attempt
		switch in.state {
		case Running:
			in.active++
			if in.idle != nil {
				in.idle.Stop()
			}
			addr := in.addr
			m.mu.Unlock()
			return addr, m.releaser(in), nil
		case Starting:
			a = in.start
			wait = a.ready
		case Stopping:
			wait = in.stopCh
		default: // Stopped, Crashed
			if d := time.Until(in.notBefore); d > 0 {
				m.mu.Unlock()
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return "", nil, fmt.Errorf("container restarting after a crash: %w", ctx.Err())
				}
				continue
			}
			if c.running >= c.cfg.MaxInstances {
				m.mu.Unlock()
				return "", nil, fmt.Errorf("%w: class %s runs %d instances (max_instances)", ErrLimit, c.cfg.Class, c.running)
			}
			if m.running >= m.opt.MaxTotal {
				m.mu.Unlock()
				return "", nil, fmt.Errorf("%w: %d instances run in total (limit %d)", ErrLimit, m.running, m.opt.MaxTotal)
			}
			a = m.beginStart(in)
			wait = a.ready
		}
		m.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
		if a != nil && a.err != nil {
			return "", nil, a.err
		}
	}
}

// releaser returns the release function of one request to in.
func (m *Manager) releaser(in *instance) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			in.active--
			in.last = time.Now()
			if in.active == 0 && in.state == Running {
				m.armIdle(in)
			}
		})
	}
}

// armIdle (re)starts in's idle timer. m.mu is held.
func (m *Manager) armIdle(in *instance) {
	d := in.c.cfg.SleepAfter
	if in.idle == nil {
		in.idle = time.AfterFunc(d, func() { m.idleFired(in) })
		return
	}
	in.idle.Reset(d)
}

func (m *Manager) idleFired(in *instance) {
	m.mu.Lock()
	if in.state != Running || in.active > 0 {
		m.mu.Unlock()
		return
	}
	if rest := in.c.cfg.SleepAfter - time.Since(in.last); rest > 0 {
		in.idle.Reset(rest)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout+30*time.Second)
	defer cancel()
	if err := m.stopInstance(ctx, in, "sleep"); err != nil {
		m.logger(in).Warn("container sleep: stopping failed", "err", err)
	}
}

// beginStart moves in to Starting and starts it on a goroutine. m.mu is held.
func (m *Manager) beginStart(in *instance) *attempt {
	a := &attempt{ready: make(chan struct{})}
	in.state, in.start = Starting, a
	in.c.running++
	m.running++
	if in.restart != nil {
		in.restart.Stop()
		in.restart = nil
	}
	m.wg.Add(1)
	go m.startInstance(in, a)
	return a
}

func (m *Manager) logger(in *instance) *slog.Logger {
	return m.log.With("worker", in.c.worker, "class", in.c.cfg.Class, "object", in.object)
}

// startInstance starts in for attempt a and waits until its port accepts connections.
func (m *Manager) startInstance(in *instance, a *attempt) {
	defer m.wg.Done()
	c := in.c
	log := m.logger(in)
	m.mu.Lock()
	opts := in.opts
	m.mu.Unlock()
	env := maps.Clone(c.cfg.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, opts.Env)
	args := opts.Args
	if args == nil {
		args = c.cfg.Args
	}
	out := newLogWriter(log)
	spec := &Spec{
		Name:   instanceName(m.opt.Owner, c.worker, c.cfg.Class, in.object),
		Image:  c.cfg.Image,
		Env:    env,
		Args:   args,
		Port:   c.cfg.Port,
		CPU:    c.cfg.CPU,
		Memory: c.cfg.Memory,
		Labels: map[string]string{OwnerLabel: m.opt.Owner, WorkerLabel: c.worker, ClassLabel: c.cfg.Class, ObjectLabel: in.object},
		Output: out,
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.StartTimeout)
	defer cancel()
	began := time.Now()
	proc, err := m.launch(ctx, spec)
	if err == nil {
		m.mu.Lock()
		in.proc = proc
		m.mu.Unlock()
		m.wg.Add(1)
		go m.watch(in, proc, out)
		err = waitPort(ctx, spec.HostPort, proc)
		if err != nil {
			err = fmt.Errorf("%w%s", err, out.tail())
			sctx, scancel := context.WithTimeout(context.Background(), DefaultStopTimeout+30*time.Second)
			_ = proc.Stop(sctx)
			scancel()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("starting container of class %s: %w", c.cfg.Class, err)
		log.Warn("container failed to start", "err", err)
		a.err = err
		if in.state == Starting { // watch may have settled it already
			m.crashed(in, -1, "crashed", false)
		}
		close(a.ready)
		return
	}
	in.state, in.addr, in.started = Running, net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.HostPort)), time.Now()
	log.Info("container started", "addr", in.addr, "took", time.Since(began).Round(time.Millisecond))
	close(a.ready)
	if in.active == 0 {
		m.armIdle(in)
	}
}

// launch picks a free loopback port and starts spec there. A port taken by another
// process between the pick and the instance's bind makes the instance exit at once: the
// start fails (a crash) and the next one picks another port.
func (m *Manager) launch(ctx context.Context, spec *Spec) (Process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	spec.HostPort = port
	return m.opt.Driver.Start(ctx, spec)
}

// watch waits for proc's exit and settles in.
func (m *Manager) watch(in *instance, proc Process, out *logWriter) {
	defer m.wg.Done()
	<-proc.Done()
	out.flush()
	code := proc.ExitCode()
	m.mu.Lock()
	if in.proc != proc {
		m.mu.Unlock()
		return
	}
	in.proc = nil
	switch in.state {
	case Stopping:
		// stopInstance settles it.
		m.mu.Unlock()
		return
	case Running, Starting:
		reason := "crashed"
		if code == 0 && in.state == Running {
			reason = "exited"
		}
		m.logger(in).Warn("container exited", "code", code, "reason", reason)
		m.crashed(in, code, reason, in.state == Running)
	}
	m.mu.Unlock()
}

// crashed settles an instance that exited on its own (or failed to start); a crash of a
// running instance restarts it after the backoff when restart is set. m.mu is held.
func (m *Manager) crashed(in *instance, code int, reason string, restart bool) {
	in.c.running--
	m.running--
	in.addr = ""
	if in.idle != nil {
		in.idle.Stop()
	}
	if reason == "exited" {
		in.state = Stopped
		in.crashes = 0
	} else {
		if !in.started.IsZero() && time.Since(in.started) >= healthyRun {
			in.crashes = 0
		}
		in.crashes++
		d := min(MinRestartBackoff<<min(in.crashes-1, 10), MaxRestartBackoff)
		in.state, in.notBefore = Crashed, time.Now().Add(d)
		// Restart it after the backoff, up to MaxAutoRestarts crashes in a row; then it
		// waits for its next request.
		if restart && !m.closed && in.crashes <= MaxAutoRestarts {
			in.restart = time.AfterFunc(d, func() { m.restartFired(in) })
		}
	}
	in.started = time.Time{}
	m.notify(in, code, reason)
}

func (m *Manager) restartFired(in *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := in.c
	if m.closed || in.state != Crashed || m.classes[classKey(c.worker, c.cfg.Class)] != c ||
		c.running >= c.cfg.MaxInstances || m.running >= m.opt.MaxTotal {
		return
	}
	m.logger(in).Info("restarting container after a crash", "crashes", in.crashes)
	m.beginStart(in)
}

// notify calls OnExit. m.mu is held.
func (m *Manager) notify(in *instance, code int, reason string) {
	if m.opt.OnExit == nil {
		return
	}
	e := Exit{Worker: in.c.worker, Class: in.c.cfg.Class, Object: in.object, Code: code, Reason: reason}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.opt.OnExit(e)
	}()
}

// stopInstance stops in, waiting first for a start in progress.
func (m *Manager) stopInstance(ctx context.Context, in *instance, reason string) error {
	for {
		m.mu.Lock()
		switch in.state {
		case Starting:
			ch := in.start.ready
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		case Stopping:
			ch := in.stopCh
			m.mu.Unlock()
			select {
			case <-ch:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		case Crashed:
			if in.restart != nil {
				in.restart.Stop()
				in.restart = nil
			}
			in.state, in.notBefore = Stopped, time.Time{}
			m.mu.Unlock()
			return nil
		case Stopped:
			m.mu.Unlock()
			return nil
		}
		// Running
		proc := in.proc
		if proc != nil {
			select {
			case <-proc.Done():
				// It exited on its own before this stop (watch has not settled it yet):
				// report that exit, not the stop's reason (a crash at the moment the
				// idle timer fired is a crash, and restarts as one).
				in.proc = nil
				code := proc.ExitCode()
				why := "crashed"
				if code == 0 {
					why = "exited"
				}
				m.logger(in).Warn("container exited", "code", code, "reason", why)
				m.crashed(in, code, why, reason == "sleep")
				m.mu.Unlock()
				return nil
			default:
			}
		}
		in.state, in.stopCh = Stopping, make(chan struct{})
		if in.idle != nil {
			in.idle.Stop()
		}
		m.mu.Unlock()
		var err error
		code := -1
		if proc != nil {
			err = proc.Stop(ctx)
			code = proc.ExitCode()
		}
		m.mu.Lock()
		in.state, in.addr, in.proc, in.crashes, in.started = Stopped, "", nil, 0, time.Time{}
		in.c.running--
		m.running--
		close(in.stopCh)
		m.logger(in).Info("container stopped", "reason", reason, "code", code)
		m.notify(in, code, reason)
		m.mu.Unlock()
		return err
	}
}

// instanceName is the container name of an object's instance: unique per owner, worker,
// class and object, and a valid container name.
func instanceName(owner, worker, cls, object string) string {
	return "verge-" + shortHash(owner+"\x00"+worker+"\x00"+cls+"\x00"+object)
}

// freePort returns a free TCP port of 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("choosing a loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until 127.0.0.1:port accepts a connection, proc exits, or ctx ends. It
// tries again after 2ms, doubling up to 50ms: a local process listens within milliseconds,
// a container within about a second, and a refused connect to loopback costs microseconds.
func waitPort(ctx context.Context, port int, proc Process) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	d := net.Dialer{Timeout: time.Second}
	pause := 2 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		t := time.NewTimer(pause)
		select {
		case <-proc.Done():
			t.Stop()
			return fmt.Errorf("exited with status %d before listening on port", proc.ExitCode())
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("port not accepting connections: %w", ctx.Err())
		case <-t.C:
		}
		pause = min(pause*2, 50*time.Millisecond)
	}
}
