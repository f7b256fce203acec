package queue

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/sqlitedb"
)

// SQLiteStore keeps every queue in one SQLite file, <dir>/queues.sqlite, in WAL mode with
// synchronous=FULL: a send, an acknowledgement and a move to a dead letter queue are
// durable when they return, and survive a crash of the process or the machine. Concurrent
// sends are committed together, in one transaction and one fsync (group commit), each
// returning when that transaction is durable.
//
// One process uses a store at a time: when it opens, messages leased by a process that
// died are made deliverable again at once (their attempts stay counted).
type SQLiteStore struct {
	db  *sql.DB
	now func() time.Time
	// maxBacklog caps each queue's stored messages, maxBytes their bodies together.
	maxBacklog, maxBytes int64

	// sends feeds the group-commit writer (writeLoop); inflight counts the sends that may
	// still use it, so that Close stops it only after them.
	sends    chan *sendReq
	inflight sync.WaitGroup
	stop     chan struct{}
	done     chan struct{}

	mu     sync.Mutex
	queues map[string]*sqliteQueue
	lease  int64 // the last lease token handed out
	closed bool
}

// Group commit bounds: one transaction takes at most this many sends.
const maxGroupSends = 64

// sendReq is one Send waiting for the writer.
type sendReq struct {
	q    *sqliteQueue
	msgs []Message
	done chan error
}

// commitSend stores msgs in q through the writer, which commits the sends waiting together
// in one transaction (one fsync), and returns once they are durable.
func (s *SQLiteStore) commitSend(ctx context.Context, q *sqliteQueue, msgs []Message) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	req := &sendReq{q: q, msgs: msgs, done: make(chan error, 1)}
	select {
	case s.sends <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over, the outcome is waited for: the write is bounded by the database's
	// busy timeout, and a send reported failed must not be stored.
	return <-req.done
}

// writeLoop commits the sends of commitSend, those waiting together in one transaction,
// until Close.
func (s *SQLiteStore) writeLoop() {
	defer close(s.done)
	var group []*sendReq
	for {
		group = group[:0]
		select {
		case <-s.stop:
			return
		case r := <-s.sends:
			group = append(group, r)
		}
	gather:
		for len(group) < maxGroupSends {
			select {
			case r := <-s.sends:
				group = append(group, r)
			default:
				break gather
			}
		}
		err := s.insert(group)
		for _, r := range group {
			if err == nil {
				r.q.mu.Lock()
				r.q.backlog += int64(len(r.msgs))
				r.q.bytes += sendBytes(r.msgs)
				r.q.mu.Unlock()
				r.q.signal()
			}
			r.done <- err
		}
	}
}

// insert stores the messages of group in one transaction.
func (s *SQLiteStore) insert(group []*sendReq) error {
	ctx := context.Background()
	now := s.now().UnixMilli()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO messages (queue, id, body, content_type, sent_at, visible_at) VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range group {
		for i := range r.msgs {
			m := &r.msgs[i]
			body := m.Body
			if body == nil {
				body = []byte{}
			}
			ct := m.ContentType
			if ct == "" {
				ct = "bytes"
			}
			if _, err := stmt.ExecContext(ctx, r.q.name, newID(), body, ct, now, now+m.Delay.Milliseconds()); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

var _ Store = (*SQLiteStore)(nil)

const sqliteSchema = `CREATE TABLE IF NOT EXISTS messages (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	queue TEXT NOT NULL,
	id TEXT NOT NULL,
	body BLOB NOT NULL,
	content_type TEXT NOT NULL,
	sent_at INTEGER NOT NULL,
	visible_at INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	lease INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at)`

// OpenSQLite opens (creating when missing) the store under dir.
func OpenSQLite(ctx context.Context, dir string) (*SQLiteStore, error) {
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, "queues.sqlite"), sqlitedb.Options{MaxConns: 1})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	s := &SQLiteStore{db: db, now: time.Now, maxBacklog: DefaultMaxBacklog, maxBytes: DefaultMaxBytes, queues: map[string]*sqliteQueue{}, lease: time.Now().UnixNano(),
		sends: make(chan *sendReq), stop: make(chan struct{}), done: make(chan struct{})}
	// Leases of a previous process: its consumers are gone.
	if _, err := db.ExecContext(ctx, "UPDATE messages SET lease = 0, visible_at = ? WHERE lease != 0", s.now().UnixMilli()); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: releasing leases: %w", err)
	}
	go s.writeLoop()
	return s, nil
}

// Queue returns the queue name.
func (s *SQLiteStore) Queue(ctx context.Context, name string) (Queue, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if q := s.queues[name]; q != nil {
		return q, nil
	}
	var n, bytes int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(length(body)), 0) FROM messages WHERE queue = ?", name).Scan(&n, &bytes); err != nil {
		return nil, fmt.Errorf("queue %s: %w", name, err)
	}
	q := &sqliteQueue{s: s, name: name, backlog: n, bytes: bytes, wake: make(chan struct{})}
	s.queues[name] = q
	return q, nil
}

// Close closes the database; receivers waiting return ErrClosed.
func (s *SQLiteStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, q := range s.queues {
		q.signal()
	}
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stop)
	<-s.done
	return s.db.Close()
}

func (s *SQLiteStore) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *SQLiteStore) nextLease() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lease++
	return s.lease
}

// sqliteQueue is one queue of a SQLiteStore.
type sqliteQueue struct {
	s    *SQLiteStore
	name string

	mu      sync.Mutex
	backlog int64
	bytes   int64         // the bodies of the backlog together
	wake    chan struct{} // closed and replaced when messages may have become deliverable
}

// sqliteRef locates a delivered message.
type sqliteRef struct {
	seq   int64
	lease int64
}

func (q *sqliteQueue) Name() string { return q.name }

// signal wakes the queue's receivers.
func (q *sqliteQueue) signal() {
	q.mu.Lock()
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
}

func (q *sqliteQueue) waiter() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wake
}

func (q *sqliteQueue) Send(ctx context.Context, msgs []Message) error {
	if err := CheckSend(msgs); err != nil {
		return err
	}
	q.mu.Lock()
	backlog, bytes := q.backlog, q.bytes
	q.mu.Unlock()
	if backlog+int64(len(msgs)) > q.s.maxBacklog {
		return fmt.Errorf("queue %s holds %d messages: %w", q.name, backlog, ErrFull)
	}
	if bytes+sendBytes(msgs) > q.s.maxBytes {
		return fmt.Errorf("queue %s holds %d bytes of messages (limit %d): %w", q.name, bytes, q.s.maxBytes, ErrFull)
	}
	if err := q.s.commitSend(ctx, q, msgs); err != nil {
		return fmt.Errorf("queue %s: send: %w", q.name, err)
	}
	return nil
}

func (q *sqliteQueue) Receive(ctx context.Context, n int, wait, lease time.Duration) ([]*Delivery, error) {
	n = min(max(n, 1), MaxBatchSize)
	var first time.Time // when a message was first seen deliverable
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if q.s.isClosed() {
			return nil, ErrClosed
		}
		wake := q.waiter()
		now := q.s.now()
		var ready int
		var next sql.NullInt64
		err := q.s.db.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM (SELECT 1 FROM messages WHERE queue = ?1 AND visible_at <= ?2 LIMIT ?3)),
			(SELECT min(visible_at) FROM messages WHERE queue = ?1 AND visible_at > ?2)`,
			q.name, now.UnixMilli(), n).Scan(&ready, &next)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("queue %s: receive: %w", q.name, err)
		}
		if ready > 0 && first.IsZero() {
			first = now
		}
		if ready >= n || (ready > 0 && now.Sub(first) >= wait) {
			ds, err := q.lease(ctx, n, lease)
			if err != nil || len(ds) > 0 {
				return ds, err
			}
			first = time.Time{}
			continue
		}
		until := time.Hour
		if ready > 0 {
			until = wait - now.Sub(first)
		}
		if next.Valid {
			until = min(until, time.Duration(next.Int64-now.UnixMilli())*time.Millisecond)
		}
		timer.Reset(max(until, time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// lease leases up to n deliverable messages, oldest first.
func (q *sqliteQueue) lease(ctx context.Context, n int, lease time.Duration) ([]*Delivery, error) {
	token := q.s.nextLease()
	now := q.s.now().UnixMilli()
	rows, err := q.s.db.QueryContext(ctx, `UPDATE messages SET lease = ?1, visible_at = ?2, attempts = attempts + 1
		WHERE seq IN (SELECT seq FROM messages WHERE queue = ?3 AND visible_at <= ?4 ORDER BY seq LIMIT ?5)
		RETURNING seq, id, body, content_type, sent_at, attempts`,
		token, now+lease.Milliseconds(), q.name, now, n)
	if err != nil {
		return nil, fmt.Errorf("queue %s: receive: %w", q.name, err)
	}
	defer rows.Close()
	var out []*Delivery
	for rows.Next() {
		var ref sqliteRef
		var sent int64
		d := &Delivery{}
		if err := rows.Scan(&ref.seq, &d.ID, &d.Body, &d.ContentType, &sent, &d.Attempts); err != nil {
			return nil, fmt.Errorf("queue %s: receive: %w", q.name, err)
		}
		ref.lease = token
		d.ref, d.Timestamp = ref, time.UnixMilli(sent)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue %s: receive: %w", q.name, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ref.(sqliteRef).seq < out[j].ref.(sqliteRef).seq })
	return out, nil
}

// seqList returns "?,?,..." and the sequence numbers of ds.
func seqList(ds []*Delivery) (string, []any, error) {
	args := make([]any, len(ds))
	for i, d := range ds {
		r, ok := d.ref.(sqliteRef)
		if !ok {
			return "", nil, fmt.Errorf("delivery %s is not from this store: %w", d.ID, ErrInvalid)
		}
		args[i] = r.seq
	}
	return strings.TrimSuffix(strings.Repeat("?,", len(ds)), ","), args, nil
}

func (q *sqliteQueue) Ack(ctx context.Context, ds []*Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	in, args, err := seqList(ds)
	if err != nil {
		return err
	}
	n, bytes, err := countRows(q.s.db.QueryContext(ctx, "DELETE FROM messages WHERE seq IN ("+in+") RETURNING length(body)", args...))
	if err != nil {
		return fmt.Errorf("queue %s: ack: %w", q.name, err)
	}
	q.mu.Lock()
	q.backlog -= n
	q.bytes -= bytes
	q.mu.Unlock()
	return nil
}

func (q *sqliteQueue) Retry(ctx context.Context, rs []Retry) error {
	if len(rs) == 0 {
		return nil
	}
	now := q.s.now().UnixMilli()
	tx, err := q.s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue %s: retry: %w", q.name, err)
	}
	defer tx.Rollback()
	for _, r := range rs {
		ref, ok := r.D.ref.(sqliteRef)
		if !ok {
			return fmt.Errorf("delivery %s is not from this store: %w", r.D.ID, ErrInvalid)
		}
		// Only the lease holder puts a message back: one whose lease ended may be
		// with another consumer now.
		if _, err := tx.ExecContext(ctx, "UPDATE messages SET lease = 0, visible_at = ? WHERE seq = ? AND lease = ?",
			now+min(max(r.Delay, 0), MaxDelay).Milliseconds(), ref.seq, ref.lease); err != nil {
			return fmt.Errorf("queue %s: retry: %w", q.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue %s: retry: %w", q.name, err)
	}
	q.signal()
	return nil
}

// MoveTo moves delivered messages to the queue dst in one transaction, as new messages
// (deliverable at once, attempts reset) that keep their IDs, bodies and timestamps.
func (q *sqliteQueue) MoveTo(ctx context.Context, ds []*Delivery, dst Queue) error {
	d, ok := dst.(*sqliteQueue)
	if !ok || d.s != q.s {
		return fmt.Errorf("queue %s: move to %s: not in the same store: %w", q.name, dst.Name(), ErrInvalid)
	}
	if len(ds) == 0 {
		return nil
	}
	in, args, err := seqList(ds)
	if err != nil {
		return err
	}
	args = append([]any{d.name, q.s.now().UnixMilli()}, args...)
	n, bytes, err := countRows(q.s.db.QueryContext(ctx, "UPDATE messages SET queue = ?, visible_at = ?, attempts = 0, lease = 0 WHERE seq IN ("+in+") RETURNING length(body)", args...))
	if err != nil {
		return fmt.Errorf("queue %s: move to %s: %w", q.name, d.name, err)
	}
	q.mu.Lock()
	q.backlog -= n
	q.bytes -= bytes
	q.mu.Unlock()
	d.mu.Lock()
	d.backlog += n
	d.bytes += bytes
	d.mu.Unlock()
	d.signal()
	return nil
}

func (q *sqliteQueue) Backlog(context.Context) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.backlog, nil
}

// sendBytes is the bodies of msgs together.
func sendBytes(msgs []Message) int64 {
	var n int64
	for i := range msgs {
		n += int64(len(msgs[i].Body))
	}
	return n
}

// countRows reads the rows of a statement RETURNING length(body): how many, and the
// lengths together.
func countRows(rows *sql.Rows, err error) (n, bytes int64, _ error) {
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var l int64
		if err := rows.Scan(&l); err != nil {
			return 0, 0, err
		}
		n++
		bytes += l
	}
	return n, bytes, rows.Err()
}
