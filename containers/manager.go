package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
