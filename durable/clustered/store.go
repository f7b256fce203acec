package clustered

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/verge-edge/verge/durable"
)

// replicateTimeout bounds appending one write batch to the log (JetStream's acknowledgement
// from a quorum of replicas).
const replicateTimeout = 10 * time.Second

// Store is the replicated Durable Object store: an object's SQLite database lives on its
// owner's disk (in an inner SQLiteStore under dir), and each batch it commits is appended to
// the object's log (its WAL pages) before Commit returns, so the namespace's output gate
// releases a response only once the batch is on a quorum of replicas. Opening an object
// requires this process's lease on it, rebuilds the database from the log, and appends a
// takeover record that fences every earlier owner.
//
// The owner also applies each shipped batch to a shadow copy of the database and uploads it
// as the object's snapshot every SnapshotEvery batches, purging the log before it; an
// activation restores the latest snapshot and replays the records after it.
//
// A namespace's alarm index is the cluster's (Alarms, a JetStream KV bucket per namespace),
// shared by every node's namespace of that name.
//
// Not built yet (docs/durable-cluster-design.md): batches above one record's size.
type Store struct {
	// SnapshotEvery is how many batches an object ships between snapshots. Zero means
	// DefaultSnapshotEvery. Set it before the first Open.
	SnapshotEvery int

	dir   string
	inner *durable.SQLiteStore
	p     *Placement
	log   *Log

	alarmsMu sync.Mutex
	alarms   map[string]*Alarms
}

var _ durable.Store = (*Store)(nil)

// NewStore returns a replicated store keeping local databases under dir. Its alarm indexes
// live in the cluster of p's node, with p's replicas.
func NewStore(dir string, p *Placement, log *Log) *Store {
	return &Store{dir: dir, inner: durable.OpenSQLite(dir), p: p, log: log, alarms: map[string]*Alarms{}}
}

// Alarms returns the namespace's alarm index shared by the cluster's nodes, opening it (and
// reading it whole) on first use.
func (s *Store) Alarms(ctx context.Context, namespace string) (durable.AlarmStore, error) {
	s.alarmsMu.Lock()
	defer s.alarmsMu.Unlock()
	if a := s.alarms[namespace]; a != nil {
		return a, nil
	}
	a, err := openAlarms(ctx, s.p.js, s.p.replicas, namespace, s.p.o.Logger)
	if err != nil {
		return nil, err
	}
	s.alarms[namespace] = a
	return a, nil
}

// Close stops the alarm indexes; objects are closed by their namespaces (which must be
// closed first).
func (s *Store) Close() error {
	s.alarmsMu.Lock()
	var errs []error
	for k, a := range s.alarms {
		errs = append(errs, a.Close())
		delete(s.alarms, k)
	}
	s.alarmsMu.Unlock()
	return errors.Join(append(errs, s.inner.Close())...)
}

// Open rebuilds the object's database from its log and opens it.
func (s *Store) Open(ctx context.Context, namespace string, id durable.ID) (durable.ObjectStore, error) {
	l := s.p.held(namespace, id)
	if l == nil || !l.Valid() {
		return nil, fmt.Errorf("durable: open %s without its lease: %w", id, durable.ErrLeaseLost)
	}
	path := filepath.Join(s.dir, namespace, id.String()+".sqlite")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	shadow := path + ".shadow"
	for _, p := range []string{path, path + "-wal", path + "-shm", shadow} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("durable: %w", err)
		}
	}
	after, err := s.log.GetSnapshot(ctx, namespace, id, shadow)
	if err != nil {
		return nil, err
	}
	if after > 0 {
		if err := copyFile(path, shadow); err != nil {
			return nil, err
		}
	}
	last, err := s.log.Replay(ctx, namespace, id, after, func(d WALDelta) error {
		if err := ApplyWAL(path, d); err != nil {
			return err
		}
		return ApplyWAL(shadow, d)
	})
	if err != nil {
		return nil, err
	}
	seq, err := s.log.Takeover(ctx, namespace, id, l.Token(), last)
	if err != nil {
		if errors.Is(err, ErrFenced) {
			l.lose("another owner wrote the object's log", err)
			return nil, fmt.Errorf("durable: %w (%w)", durable.ErrLeaseLost, err)
		}
		return nil, err
	}
	obj, err := s.inner.Open(ctx, namespace, id)
	if err != nil {
		return nil, err
	}
	o := &replObject{ObjectStore: obj, s: s, ns: namespace, id: id, lease: l, wal: path + "-wal", shadow: shadow, expect: seq}
	// Opening a new database creates its schema: that is a batch too.
	if err := o.ship(ctx); err != nil {
		obj.Close()
		return nil, err
	}
	return o, nil
}

// replObject is an object's local database whose commits are shipped to the log.
type replObject struct {
	durable.ObjectStore
	s      *Store
	ns     string
	id     durable.ID
	lease  *Lease
	wal    string
	shadow string // "" once it failed: no more snapshots from this activation

	mu        sync.Mutex // guards the shipment state below
	pos       WALPosition
	expect    uint64
	failed    error
	sinceSnap int
}

// ship appends what the WAL gained since the last shipment. Any failure leaves the local
// database ahead of the log: the object is then unusable here (its lease is dropped, so that
// the next activation rebuilds it from the log, here or on another node).
func (o *replObject) ship(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed != nil {
		return o.failed
	}
	d, next, err := ReadWAL(o.wal, o.pos)
	if err == nil && len(d.Pages) > 0 {
		var seq uint64
		if seq, err = o.s.log.Append(ctx, o.ns, o.id, o.lease.Token(), o.expect, d); err == nil {
			o.expect = seq
		}
	}
	if err != nil {
		o.failed = fmt.Errorf("durable: write batch of %s not replicated: %w (%w)", o.id, durable.ErrLeaseLost, err)
		o.lease.lose("write batch not replicated", err)
		return o.failed
	}
	o.pos = next
	if len(d.Pages) > 0 {
		o.snapshot(ctx, d)
	}
	return nil
}

// snapshot applies a shipped batch to the shadow copy and uploads the shadow every
// SnapshotEvery batches. Failures cost only log length: they are logged.
func (o *replObject) snapshot(ctx context.Context, d WALDelta) {
	if o.shadow == "" {
		return
	}
	log := o.s.p.o.Logger
	if err := ApplyWAL(o.shadow, d); err != nil {
		log.Warn("durable: snapshot copy failed; no more snapshots until the object is activated again", "object", o.id.String(), "err", err)
		o.shadow = ""
		return
	}
	o.sinceSnap++
	every := o.s.SnapshotEvery
	if every <= 0 {
		every = DefaultSnapshotEvery
	}
	if o.sinceSnap < every {
		return
	}
	if err := o.s.log.PutSnapshot(ctx, o.ns, o.id, o.expect, o.shadow); err != nil {
		log.Warn("durable: snapshot failed", "object", o.id.String(), "err", err)
		return
	}
	o.sinceSnap = 0
}

// copyFile copies src to dst.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("durable: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	return nil
}

func (o *replObject) Begin(ctx context.Context) (durable.Txn, error) {
	o.mu.Lock()
	failed := o.failed
	o.mu.Unlock()
	if failed != nil {
		return nil, failed
	}
	t, err := o.ObjectStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &replTxn{Txn: t, o: o}, nil
}

// replTxn ships its batch to the log after committing it locally.
type replTxn struct {
	durable.Txn
	o *replObject
}

func (t *replTxn) Commit() error {
	if err := t.Txn.Commit(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), replicateTimeout)
	defer cancel()
	return t.o.ship(ctx)
}

// Aborted passes the inner batch's state on (see durable.Namespace.Do).
func (t *replTxn) Aborted() bool {
	a, ok := t.Txn.(interface{ Aborted() bool })
	return ok && a.Aborted()
}
