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

// Store is the replicated Durable Object store: an object's SQLite database lives on its
// owner's disk (in an inner SQLiteStore under dir), and each batch it commits is appended to
// the object's log (its WAL pages) before Commit returns, so the namespace's output gate
// releases a response only once the batch is on a quorum of replicas. Opening an object
// requires this process's lease on it, rebuilds the database from the log, and appends a
// takeover record that fences every earlier owner.
//
// The owner also applies each shipped batch to a shadow copy of the database and, every
// SnapshotEvery batches, uploads the shadow as the object's snapshot in the background (one
// upload per object at a time; batches shipped meanwhile are applied to the shadow after
// it), purging the log before it; an activation restores the latest snapshot and replays
// the records after it.
//
// A namespace's alarm index is the cluster's (Alarms, a JetStream KV bucket per namespace),
// shared by every node's namespace of that name.
type Store struct {
	// SnapshotEvery is how many batches an object ships between snapshots. Zero means
	// DefaultSnapshotEvery. Set it before the first Open.
	SnapshotEvery int

	// OnReplicate, when not nil, is called after each batch an owner appended to the log
	// with the time from the start of the append to the acknowledgement of its last part,
	// and the record's size in bytes. It runs on the commit's path, under the object's
	// gate: it must be quick (a histogram observation). Set it before the first Open.
	OnReplicate func(d time.Duration, bytes int)
	// OnRestore, when not nil, is called after each activation that rebuilt an object from
	// the log, with the time the rebuild took (snapshot fetch, replay, takeover record) and
	// the number of batches replayed after the snapshot. Set it before the first Open.
	OnRestore func(d time.Duration, records int)

	// snapshotted, when not nil, is called by an object's uploader after each snapshot
	// attempt (tests wait on it); beforeUpload before each upload (tests hold it).
	snapshotted  func(namespace string, id durable.ID, seq uint64, err error)
	beforeUpload func()
	// maxPending is maxPendingSnapshotBytes unless tests set it.
	maxPending int

	dir   string
	inner *durable.SQLiteStore
	p     *Placement
	log   *Log

	alarmsMu sync.Mutex
	alarms   map[string]*lazyAlarms
}

var _ durable.Store = (*Store)(nil)

// NewStore returns a replicated store keeping local databases under dir. Its alarm indexes
// live in the cluster of p's node, with p's replicas.
func NewStore(dir string, p *Placement, log *Log) *Store {
	inner := durable.OpenSQLite(dir)
	// The log's acknowledgement makes a batch durable; the local copy is rebuilt from the
	// log at every activation, so its commits need no fsync.
	inner.NoSync = true
	return &Store{dir: dir, inner: inner, p: p, log: log, alarms: map[string]*lazyAlarms{}}
}

// Alarms returns the namespace's alarm index shared by the cluster's nodes. The index is
// opened (and read whole) in the background, so that a namespace can be created while the
// cluster cannot be reached; its methods wait for it within their context.
func (s *Store) Alarms(ctx context.Context, namespace string) (durable.AlarmStore, error) {
	s.alarmsMu.Lock()
	defer s.alarmsMu.Unlock()
	if a := s.alarms[namespace]; a != nil {
		return a, nil
	}
	a := newLazyAlarms(s.p.js, s.p.replicas, namespace, s.p.o.Logger)
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
	start := time.Now()
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
	records := 0
	last, err := s.log.Replay(ctx, namespace, id, after, func(d WALDelta) error {
		records++
		// No sync: a crash before the object is open leaves files the next Open deletes.
		if err := applyWAL(path, d, false); err != nil {
			return err
		}
		return applyWAL(shadow, d, false)
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
	if s.OnRestore != nil {
		s.OnRestore(time.Since(start), records)
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
	o.startUploader()
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
	// While the uploader reads the shadow (uploading), shipped batches wait in pending;
	// the uploader applies them to the shadow when it is done. cancelUpload ends the
	// upload in progress (when pending grows past maxPendingSnapshotBytes).
	uploading    bool
	pending      []WALDelta
	pendingBytes int
	cancelUpload context.CancelFunc

	// The uploader: one goroutine per object (snapshotUploader), started by Open, stopped
	// and waited for by Close.
	uploads      chan snapJob // capacity 1: at most one job, sent only when !uploading
	uploadCtx    context.Context
	stopUploads  context.CancelFunc
	uploaderDone chan struct{}
}

// snapJob is one snapshot to upload: the shadow file as of log sequence seq.
type snapJob struct {
	ctx    context.Context
	cancel context.CancelFunc
	seq    uint64
	path   string
}

// maxPendingSnapshotBytes bounds the batches an object keeps in memory while its shadow is
// uploaded: past it the upload is abandoned (the next one starts SnapshotEvery batches
// later) rather than the memory growing with a slow upload.
const maxPendingSnapshotBytes = 64 << 20

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
		start := time.Now()
		var seq uint64
		if seq, err = o.s.log.Append(ctx, o.ns, o.id, o.lease.Token(), o.expect, d); err == nil {
			o.expect = seq
			if o.s.OnReplicate != nil {
				o.s.OnReplicate(time.Since(start), recordSize(d))
			}
		}
	}
	switch {
	case err == nil:
	case !errors.Is(err, errAppendUnknown):
		// Not in the log (another owner fenced it, or nothing was sent): the batch's
		// requests may be tried again, elsewhere.
		o.failed = fmt.Errorf("durable: write batch of %s not replicated: %w (%w)", o.id, durable.ErrLeaseLost, err)
		o.lease.lose("write batch not replicated", err)
		return o.failed
	default:
		// Perhaps in the log (an acknowledgement that never came): the batch's requests
		// fail with an outcome-unknown error and are not repeated; the next activation
		// rebuilds the object from the log, with or without the batch.
		o.failed = fmt.Errorf("durable: write batch of %s: replication outcome unknown: %w", o.id, err)
		o.lease.lose("write batch's replication unknown", err)
		return o.failed
	}
	o.pos = next
	if len(d.Pages) > 0 {
		o.snapshot(d)
	}
	return nil
}

// snapshot applies a shipped batch to the shadow copy and, every SnapshotEvery batches,
// hands the shadow (consistent as of o.expect) to the object's uploader. While the
// uploader reads it, batches are kept in pending instead. Failures cost only log length:
// they are logged. The caller holds o.mu.
func (o *replObject) snapshot(d WALDelta) {
	if o.shadow == "" {
		return
	}
	o.sinceSnap++
	if o.uploading {
		o.pending = append(o.pending, d)
		o.pendingBytes += recordSize(d)
		limit := o.s.maxPending
		if limit <= 0 {
			limit = maxPendingSnapshotBytes
		}
		if o.pendingBytes > limit && o.cancelUpload != nil {
			o.cancelUpload()
			o.cancelUpload = nil
		}
		return
	}
	if !o.applyShadow(d) {
		return
	}
	every := o.s.SnapshotEvery
	if every <= 0 {
		every = DefaultSnapshotEvery
	}
	if o.sinceSnap < every || o.uploads == nil {
		return
	}
	ctx, cancel := context.WithTimeout(o.uploadCtx, snapshotTimeout)
	o.uploading, o.cancelUpload = true, cancel
	o.sinceSnap = 0
	o.uploads <- snapJob{ctx: ctx, cancel: cancel, seq: o.expect, path: o.shadow}
}

// applyShadow applies a batch to the shadow; on failure it turns snapshots off for this
// activation. The caller holds o.mu.
func (o *replObject) applyShadow(d WALDelta) bool {
	// No sync: the shadow only feeds snapshots, and Open deletes it.
	if err := applyWAL(o.shadow, d, false); err != nil {
		o.s.p.o.Logger.Warn("durable: snapshot copy failed; no more snapshots until the object is activated again", "object", o.id.String(), "err", err)
		o.shadow = ""
		return false
	}
	return true
}

// snapshotTimeout bounds one snapshot upload and the purge after it.
const snapshotTimeout = 2 * time.Minute

// startUploader starts the object's snapshot uploader (none when snapshots are off).
func (o *replObject) startUploader() {
	if o.shadow == "" {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.mu.Lock()
	o.uploads = make(chan snapJob, 1)
	o.uploadCtx = ctx
	o.mu.Unlock()
	o.stopUploads = cancel
	o.uploaderDone = make(chan struct{})
	go o.snapshotUploader(ctx)
}

// snapshotUploader uploads the snapshots snapshot hands it, one at a time, until Close,
// and after each applies the batches shipped meanwhile to the shadow.
func (o *replObject) snapshotUploader(ctx context.Context) {
	defer close(o.uploaderDone)
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-o.uploads:
			err := o.upload(job)
			job.cancel()
			switch {
			case err == nil, ctx.Err() != nil:
			case errors.Is(err, context.Canceled):
				o.s.p.o.Logger.Info("durable: snapshot abandoned: the batches written during its upload passed the memory limit", "object", o.id.String())
			default:
				o.s.p.o.Logger.Warn("durable: snapshot failed", "object", o.id.String(), "err", err)
			}
			o.mu.Lock()
			for _, d := range o.pending {
				if ctx.Err() != nil || o.shadow == "" || !o.applyShadow(d) {
					break
				}
			}
			o.pending, o.pendingBytes = nil, 0
			o.uploading, o.cancelUpload = false, nil
			o.mu.Unlock()
			// Reported once the shadow takes batches again: a batch committed after the
			// report counts towards the next snapshot instead of waiting in pending.
			if f := o.s.snapshotted; f != nil {
				f(o.ns, o.id, job.seq, err)
			}
		}
	}
}

// upload uploads one snapshot and purges the log before it, while this process holds the
// object's lease (a snapshot from an owner that lost it could replace a newer owner's).
func (o *replObject) upload(job snapJob) error {
	if o.s.beforeUpload != nil {
		o.s.beforeUpload()
	}
	if !o.lease.Valid() {
		return fmt.Errorf("durable: snapshot of %s skipped: %w", o.id, durable.ErrLeaseLost)
	}
	return o.s.log.PutSnapshot(job.ctx, o.ns, o.id, job.seq, job.path)
}

// Close stops the snapshot uploader (an upload in progress is abandoned: the log keeps
// what it would have purged) and closes the database.
func (o *replObject) Close() error {
	if o.stopUploads != nil {
		o.stopUploads()
		<-o.uploaderDone
	}
	return o.ObjectStore.Close()
}

// recordSize is the size of d's log record (encodeDelta).
func recordSize(d WALDelta) int { return 12 + len(d.Pages)*(4+d.PageSize) }

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
		// Nothing of this batch ran: its requests may be tried again once the object is
		// rebuilt (the failure dropped its lease).
		return nil, fmt.Errorf("durable: object %s dropped after a failed replication: %w (%w)", o.id, durable.ErrLeaseLost, failed)
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
	// Not one deadline for the whole batch: each message of the append (a whole record or
	// one part) is bounded by appendTimeout, so a batch of many parts takes what it needs
	// as long as every part makes progress.
	return t.o.ship(context.Background())
}

// Aborted passes the inner batch's state on (see durable.Namespace.Do).
func (t *replTxn) Aborted() bool {
	a, ok := t.Txn.(interface{ Aborted() bool })
	return ok && a.Aborted()
}
