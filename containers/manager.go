package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Defaults and bounds of a Manager and its classes.
const (
	// DefaultSleepAfter is how long an instance runs without requests before it is
	// stopped, when ClassConfig.SleepAfter is zero.
	DefaultSleepAfter = 10 * time.Minute
	// DefaultMaxInstances caps a class's running instances when ClassConfig.MaxInstances
	// is zero.
	DefaultMaxInstances = 10
	// DefaultMaxTotal caps the running instances of a Manager when Options.MaxTotal is
	// zero.
	DefaultMaxTotal = 50
	// DefaultStartTimeout bounds a start, until the instance's port accepts connections,
	// when ClassConfig.StartTimeout is zero.
	DefaultStartTimeout = 60 * time.Second
	// MaxStartEnv and MaxStartArgs bound StartOptions; MaxStartValue bounds each name,
	// value and argument.
	MaxStartEnv   = 64
	MaxStartArgs  = 64
	MaxStartValue = 4 << 10
	// MinRestartBackoff and MaxRestartBackoff bound the wait before restarting an instance
	// that crashed: it doubles with each crash in a row.
	MinRestartBackoff = time.Second
	MaxRestartBackoff = 60 * time.Second
	// MaxAutoRestarts bounds the restarts in a row of an instance that keeps crashing;
	// after them it starts again on its next request only.
	MaxAutoRestarts = 5
	// healthyRun is how long an instance must have run for its crash to start a new
	// series of backoffs.
	healthyRun = 30 * time.Second
	// maxRecords bounds the remembered stopped instances of a class.
	maxRecords = 4096
)

// State is an instance's state.
type State int

// States of an instance.
const (
	// Stopped: not running (never started, slept, stopped or exited with status 0).
	Stopped State = iota
	// Starting: started, its port not accepting connections yet.
	Starting
	// Running: its port accepts connections.
	Running
	// Stopping: asked to stop, not exited yet.
	Stopping
	// Crashed: exited with a failure (or failed to start); restarted after a backoff.
	Crashed
)

var stateNames = [...]string{"stopped", "starting", "running", "stopping", "crashed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ClassConfig configures the container of one Durable Object class of a worker.
type ClassConfig struct {
	// Class is the Durable Object class. Required.
	Class string
	// Image is the image reference (Podman) or executable path (process driver). Required.
	Image string
	// Port is the port the instance listens on inside its container. Required for Podman.
	Port int
	// Env are environment variables of every instance; StartOptions.Env adds to them.
	Env map[string]string
	// Args are the arguments after the image's entry point, unless StartOptions.Args
	// replaces them.
	Args []string
	// CPU and Memory cap each instance (zero: no cap).
	CPU    float64
	Memory int64
	// SleepAfter stops an instance this long after its last request ended. Zero means
	// DefaultSleepAfter.
	SleepAfter time.Duration
	// MaxInstances caps the class's instances that run (or start, or stop) at once. Zero
	// means DefaultMaxInstances.
	MaxInstances int
	// StartTimeout bounds a start. Zero means DefaultStartTimeout.
	StartTimeout time.Duration
}

// StartOptions are the options of an explicit start (the object's start call).
type StartOptions struct {
	// Env adds to and overrides ClassConfig.Env.
	Env map[string]string
	// Args are the arguments after the image's entry point. Nil means ClassConfig.Args;
	// an empty slice means none.
	Args []string
}

// Check bounds o.
func (o *StartOptions) Check() error {
	if len(o.Env) > MaxStartEnv {
		return fmt.Errorf("%d environment variables exceed %d", len(o.Env), MaxStartEnv)
	}
	if len(o.Args) > MaxStartArgs {
		return fmt.Errorf("%d arguments exceed %d", len(o.Args), MaxStartArgs)
	}
	for k, v := range o.Env {
		if k == "" || len(k) > MaxStartValue || len(v) > MaxStartValue {
			return fmt.Errorf("environment variable %.40q: empty name or longer than %d bytes", k, MaxStartValue)
		}
		for _, c := range []byte(k) {
			if c == '=' || c == 0 {
				return fmt.Errorf("environment variable %.40q: bad name", k)
			}
		}
	}
	for _, a := range o.Args {
		if len(a) > MaxStartValue {
			return fmt.Errorf("argument longer than %d bytes", MaxStartValue)
		}
	}
	return nil
}

// Exit reports an instance that stopped or exited.
type Exit struct {
	Worker, Class, Object string
	// Code is the exit status (-1 when unknown).
	Code int
	// Reason is "stopped" (Stop), "sleep" (idle), "exited" (status 0 on its own),
	// "crashed" (a failure status, or a start that failed), or "shutdown" (Close or a
	// redeploy).
	Reason string
}

// Options configure a Manager.
type Options struct {
	// Driver starts instances. Required.
	Driver Driver
	// Owner identifies this Manager's instances across restarts (OwnerLabel): New removes
	// what an earlier Manager of the same owner left running. Required.
	Owner string
	// Logger receives lifecycle events and the instances' output, with the worker, class
	// and object. Nil means slog.Default().
	Logger *slog.Logger
	// MaxTotal caps the instances of all classes running at once. Zero means
	// DefaultMaxTotal.
	MaxTotal int
	// OnExit, when set, is called on a goroutine of its own after an instance exited.
	OnExit func(Exit)
}

// Manager keeps the instances of the container classes of workers.
type Manager struct {
	opt     Options
	log     *slog.Logger
	mu      sync.Mutex
	classes map[string]*class // by worker + "\x00" + class
	running int
	closed  bool
	wg      sync.WaitGroup
	cleaned sync.Once
	// cancelOrphans ends RemoveOrphansInBackground's removal (Close).
	cancelOrphans context.CancelFunc
}

type class struct {
	m       *Manager
	worker  string
	cfg     ClassConfig
	insts   map[string]*instance
	running int
}

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

// New returns a Manager. It removes the orphans of opt.Owner (RemoveOrphans) when the
// first class is set.
func New(opt Options) (*Manager, error) {
	if opt.Driver == nil || opt.Owner == "" {
		return nil, errors.New("containers: Driver and Owner are required")
	}
	if opt.MaxTotal <= 0 {
		opt.MaxTotal = DefaultMaxTotal
	}
	m := &Manager{opt: opt, log: opt.Logger, classes: map[string]*class{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	return m, nil
}

// orphanTimeout bounds removing what an earlier run left.
const orphanTimeout = 2 * time.Minute

// RemoveOrphans removes the instances an earlier Manager of the same owner left running
// (killed before it could stop them). SetClasses calls it before the first class is set;
// later calls do nothing.
func (m *Manager) RemoveOrphans(ctx context.Context) error {
	var err error
	m.cleaned.Do(func() {
		var n int
		n, err = m.opt.Driver.RemoveOrphans(ctx, m.opt.Owner)
		if err != nil {
			err = fmt.Errorf("containers: removing instances left by an earlier run: %w", err)
			m.log.Error("containers: removing instances left by an earlier run", "owner", m.opt.Owner, "err", err)
			return
		}
		if n > 0 {
			m.log.Warn("containers: removed instances left by an earlier run", "count", n, "owner", m.opt.Owner)
		}
	})
	return err
}

// RemoveOrphansInBackground runs RemoveOrphans on a goroutine of the Manager's own (Close
// waits for it), for a start with no container class deployed yet, or none at all: what a
// killed predecessor left running is removed even when the configuration no longer has
// containers. SetClasses waits for it before it starts any instance.
// Close cancels it.
func (m *Manager) RemoveOrphansInBackground() {
	ctx, cancel := context.WithTimeout(context.Background(), orphanTimeout)
	m.mu.Lock()
	m.cancelOrphans = cancel
	m.mu.Unlock()
	m.wg.Add(1)
	go m.removeOrphansAtStart(ctx, cancel)
}

func (m *Manager) removeOrphansAtStart(ctx context.Context, cancel context.CancelFunc) {
	defer m.wg.Done()
	defer cancel()
	m.RemoveOrphans(ctx)
}

func classKey(worker, class string) string { return worker + "\x00" + class }

// SetClasses sets the container classes of worker (none removes them). The worker's
// instances of the classes it had are stopped, on a goroutine of their own (Close waits for
// them): requests from now on start new instances of the new classes.
func (m *Manager) SetClasses(worker string, cfgs []ClassConfig) error {
	if len(cfgs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), orphanTimeout)
		m.RemoveOrphans(ctx)
		cancel()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var old []*class
	for k, c := range m.classes {
		if c.worker == worker {
			old = append(old, c)
			delete(m.classes, k)
		}
	}
	for _, cfg := range cfgs {
		if cfg.SleepAfter <= 0 {
			cfg.SleepAfter = DefaultSleepAfter
		}
		if cfg.MaxInstances <= 0 {
			cfg.MaxInstances = DefaultMaxInstances
		}
		if cfg.StartTimeout <= 0 {
			cfg.StartTimeout = DefaultStartTimeout
		}
		m.classes[classKey(worker, cfg.Class)] = &class{m: m, worker: worker, cfg: cfg, insts: map[string]*instance{}}
	}
	if len(old) > 0 {
		m.wg.Add(1)
		go m.retire(old)
	}
	m.mu.Unlock()
	return nil
}

// retire stops the instances of classes replaced by SetClasses.
func (m *Manager) retire(cs []*class) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*DefaultStopTimeout+30*time.Second)
	defer cancel()
	if err := m.stopClasses(ctx, cs); err != nil {
		m.log.Warn("containers: stopping the instances of a previous deploy", "err", err)
	}
}

// Has tells whether worker has a container for class.
func (m *Manager) Has(worker, class string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.classes[classKey(worker, class)] != nil
}

func (m *Manager) stopClasses(ctx context.Context, cs []*class) error {
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	m.mu.Lock()
	for _, c := range cs {
		for _, in := range c.insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.stopInstance(ctx, in, "shutdown"); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}()
		}
	}
	m.mu.Unlock()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// Close stops every instance and refuses new ones. It returns when they exited, or when
// ctx ends.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	if m.cancelOrphans != nil {
		m.cancelOrphans()
	}
	var cs []*class
	for _, c := range m.classes {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	err := m.stopClasses(ctx, cs)
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// lookup returns the class, and the object's instance (created when create is set).
// m.mu is held.
func (m *Manager) lookup(worker, cls, object string, create bool) (*class, *instance, error) {
	if m.closed {
		return nil, nil, ErrClosed
	}
	c := m.classes[classKey(worker, cls)]
	if c == nil {
		return nil, nil, fmt.Errorf("%w: worker %s, class %s", ErrNoClass, worker, cls)
	}
	in := c.insts[object]
	if in == nil && create {
		if len(c.insts) >= maxRecords {
			for k, o := range c.insts {
				if o.state == Stopped && o.active == 0 {
					delete(c.insts, k)
				}
			}
		}
		in = &instance{c: c, object: object}
		c.insts[object] = in
	}
	return c, in, nil
}

// Start starts the object's instance with o, unless it runs already, and waits until its
// port accepts connections (bounded by ClassConfig.StartTimeout and ctx). The options are
// kept for later starts (after sleeping or crashing).
func (m *Manager) Start(ctx context.Context, worker, cls, object string, o StartOptions) error {
	if err := o.Check(); err != nil {
		return err
	}
	o.Env = maps.Clone(o.Env)
	o.Args = slices.Clone(o.Args)
	m.mu.Lock()
	_, in, err := m.lookup(worker, cls, object, true)
	if err == nil {
		in.opts = o
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	_, release, err := m.acquire(ctx, in)
	if err == nil {
		release()
	}
	return err
}

// Acquire returns the address (127.0.0.1:port) of the object's instance, starting it when
// it does not run, and a release function to call when the request to it ends: the idle
// time counts from the last release.
func (m *Manager) Acquire(ctx context.Context, worker, cls, object string) (string, func(), error) {
	m.mu.Lock()
	_, in, err := m.lookup(worker, cls, object, true)
	m.mu.Unlock()
	if err != nil {
		return "", nil, err
	}
	return m.acquire(ctx, in)
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

// Stop stops the object's instance (reason "stopped") and returns once it exited.
func (m *Manager) Stop(ctx context.Context, worker, cls, object string) error {
	m.mu.Lock()
	_, in, err := m.lookup(worker, cls, object, false)
	m.mu.Unlock()
	if err != nil || in == nil {
		return err
	}
	return m.stopInstance(ctx, in, "stopped")
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

// State returns the state of the object's instance (Stopped for one never started).
func (m *Manager) State(worker, cls, object string) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, in, err := m.lookup(worker, cls, object, false)
	if err != nil || in == nil {
		return Stopped, err
	}
	return in.state, nil
}

// Running returns the number of instances running (starting and stopping included).
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
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
