package clustered

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/durable"
)

// lazyAlarms is a namespace's alarm index as the store hands it out: it is opened in the
// background, tried again until the cluster answers, so that creating a namespace (a worker
// deploy) neither waits for JetStream nor fails when NATS cannot be reached yet. Until the
// index is open, Next reports no alarm, Defer does nothing, and the other methods wait for
// it within their context (then fail with cluster.ErrUnavailable); the namespaces
// registered with Notify are woken once it is open.
type lazyAlarms struct {
	namespace string

	open chan struct{} // closed once a is set
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the opener returns

	mu       sync.Mutex
	a        *Alarms
	notify   map[int]func()
	stops    map[int]func() // the open index's registrations of notify's entries
	nextID   int
	closed   bool
	closeErr error
}

var (
	_ durable.AlarmStore    = (*lazyAlarms)(nil)
	_ durable.AlarmDeferrer = (*lazyAlarms)(nil)
	_ durable.AlarmNotifier = (*lazyAlarms)(nil)
)

// alarmRetry is the pause between failed attempts to open an index.
const alarmRetry = time.Second

func newLazyAlarms(js jetstream.JetStream, replicas int, namespace string, log *slog.Logger) *lazyAlarms {
	l := &lazyAlarms{namespace: namespace, open: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		notify: map[int]func(){}, stops: map[int]func(){}}
	go l.opener(js, replicas, log)
	return l
}

func (l *lazyAlarms) opener(js jetstream.JetStream, replicas int, log *slog.Logger) {
	defer close(l.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-l.done:
		}
	}()
	for try := 1; ; try++ {
		a, err := openAlarms(ctx, js, replicas, l.namespace, log)
		if err == nil {
			l.mu.Lock()
			if l.closed {
				l.mu.Unlock()
				a.Close()
				return
			}
			l.a = a
			var wake []func()
			for id, f := range l.notify {
				l.stops[id] = a.Notify(f)
				wake = append(wake, f)
			}
			l.mu.Unlock()
			close(l.open)
			for _, f := range wake {
				f()
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if try == 3 {
			log.Warn("durable: the alarm index is not open yet; alarms of the namespace wait for it", "namespace", l.namespace, "err", err)
		}
		t := time.NewTimer(alarmRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// index returns the open index, waiting for it within ctx.
func (l *lazyAlarms) index(ctx context.Context) (*Alarms, error) {
	select {
	case <-l.open:
		return l.a, nil
	default:
	}
	select {
	case <-l.open:
		return l.a, nil
	case <-l.stop:
		return nil, durable.ErrClosed
	case <-ctx.Done():
		return nil, classify("open alarm index", ctx.Err())
	}
}

// opened returns the index if it is open, else nil.
func (l *lazyAlarms) opened() *Alarms {
	select {
	case <-l.open:
		return l.a
	default:
		return nil
	}
}

func (l *lazyAlarms) Get(ctx context.Context, id durable.ID) (durable.Alarm, bool, error) {
	a, err := l.index(ctx)
	if err != nil {
		return durable.Alarm{}, false, err
	}
	return a.Get(ctx, id)
}

func (l *lazyAlarms) Set(ctx context.Context, id durable.ID, at time.Time) error {
	a, err := l.index(ctx)
	if err != nil {
		return err
	}
	return a.Set(ctx, id, at)
}

func (l *lazyAlarms) Delete(ctx context.Context, id durable.ID) error {
	a, err := l.index(ctx)
	if err != nil {
		return err
	}
	return a.Delete(ctx, id)
}

// Next reports no alarm until the index is open (the namespaces are woken then).
func (l *lazyAlarms) Next(ctx context.Context) (durable.Alarm, bool, error) {
	if a := l.opened(); a != nil {
		return a.Next(ctx)
	}
	return durable.Alarm{}, false, ctx.Err()
}

func (l *lazyAlarms) Reschedule(ctx context.Context, id durable.ID, prev, at time.Time, retries int) error {
	a, err := l.index(ctx)
	if err != nil {
		return err
	}
	return a.Reschedule(ctx, id, prev, at, retries)
}

func (l *lazyAlarms) Done(ctx context.Context, id durable.ID, prev time.Time) error {
	a, err := l.index(ctx)
	if err != nil {
		return err
	}
	return a.Done(ctx, id, prev)
}

func (l *lazyAlarms) Defer(id durable.ID, at, until time.Time) {
	if a := l.opened(); a != nil {
		a.Defer(id, at, until)
	}
}

func (l *lazyAlarms) Notify(f func()) (stop func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.nextID
	l.nextID++
	l.notify[id] = f
	if l.a != nil {
		l.stops[id] = l.a.Notify(f)
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.notify, id)
		if s := l.stops[id]; s != nil {
			s()
			delete(l.stops, id)
		}
	}
}

// Close stops opening the index, or closes it.
func (l *lazyAlarms) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.a != nil {
		l.closeErr = l.a.Close()
	}
	return l.closeErr
}
