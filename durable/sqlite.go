package durable

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/sqlitedb"
)

// validName is what a namespace name may look like: it becomes a directory name.
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// SQLiteStore keeps each object in its own SQLite file, <Dir>/<namespace>/<id>.sqlite (so
// that each object has its own SQL database, as Cloudflare's SQLite-backed objects do), and
// each namespace's alarms in <Dir>/<namespace>/_alarms.sqlite. Files are in WAL mode with
// synchronous=FULL: a committed batch survives a crash.
//
// The SQL a Durable Object's code runs (Txn.SQL) is confined to the object's own database
// by an SQLite authorizer and per-connection limits (see sqlitedb.Sandbox): no ATTACH,
// VACUUM, extension loading, temp objects, transaction control or pragmas beyond read-only
// schema queries; the reserved tables (_verge_*, sqlite_*) can be neither read, written,
// created nor dropped; each statement runs at most SQLStatementTime and returns at most
// MaxSQLResultBytes.
type SQLiteStore struct {
	// SQLStatementTime bounds one statement of Txn.SQL, every row of its result included.
	// Zero means DefaultSQLStatementTime. Set it before the first Open.
	SQLStatementTime time.Duration
	// NoSync commits objects' batches without fsync (the alarm index keeps it). Only for a
	// store whose object files are rebuilt from a replicated log after a crash (the
	// cluster's, package clustered): there the log's acknowledgement, not the local file,
	// makes a batch durable. Set it before the first Open.
	NoSync bool

	dir string

	mu     sync.Mutex
	alarms map[string]*sqliteAlarms
}

var _ Store = (*SQLiteStore)(nil)

// OpenSQLite returns a store under dir.
func OpenSQLite(dir string) *SQLiteStore {
	return &SQLiteStore{dir: dir, alarms: map[string]*sqliteAlarms{}}
}

func checkNamespace(ns string) error {
	if !validName.MatchString(ns) {
		return fmt.Errorf("durable: invalid namespace name %q: %w", ns, ErrInvalid)
	}
	return nil
}

const objectSchema = `CREATE TABLE IF NOT EXISTS _verge_kv (key BLOB NOT NULL PRIMARY KEY, value BLOB NOT NULL)`

// ReservedPrefix starts the names of Verge's own tables in an object's database; the
// object's SQL can neither read, write, create nor drop tables so named (nor SQLite's own
// "sqlite_" ones).
const ReservedPrefix = "_verge_"

// Limits of Txn.SQL on the SQLite store.
const (
	// DefaultSQLStatementTime is SQLiteStore.SQLStatementTime's default.
	DefaultSQLStatementTime = sqlitedb.DefaultStatementTime
	// MaxSQLResultBytes bounds one statement's result (values plus 16 bytes per value).
	MaxSQLResultBytes = 16 << 20
	// MaxSQLValueBytes bounds one string or blob, and one row, in SQL (SQLITE_LIMIT_LENGTH):
	// what a key-value entry needs.
	MaxSQLValueBytes = MaxValueBytes + 64<<10
)

// Errors of Txn.SQL on the SQLite store, wrapped with the reason.
var (
	// ErrSQLDenied: the statement reaches outside the object's own tables.
	ErrSQLDenied = sqlitedb.ErrDenied
	// ErrSQLTimeLimit: the statement ran longer than SQLStatementTime.
	ErrSQLTimeLimit = sqlitedb.ErrTimeLimit
)

// Open opens the object's database file.
func (s *SQLiteStore) Open(ctx context.Context, namespace string, id ID) (ObjectStore, error) {
	if err := checkNamespace(namespace); err != nil {
		return nil, err
	}
	sb := &sqlitedb.Sandbox{Reserved: []string{ReservedPrefix}, StatementTime: s.SQLStatementTime, MaxLength: MaxSQLValueBytes}
	db, err := sqlitedb.Open(ctx, filepath.Join(s.dir, namespace, id.String()+".sqlite"), sqlitedb.Options{MaxConns: 1, Sandbox: sb, NoSync: s.NoSync})
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	if _, err := db.ExecContext(ctx, objectSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("durable: %w", err)
	}
	o := &sqliteObject{db: db, sandbox: sb, stmts: map[string]*sql.Stmt{}}
	for _, q := range preparedQueries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("durable: prepare: %w", err)
		}
		o.stmts[q] = st
	}
	return o, nil
}

// Statements of every request, prepared when an object is opened (the single connection is
// busy with the write batch afterwards).
const (
	qGet        = "SELECT value FROM _verge_kv WHERE key = ?"
	qPut        = "INSERT INTO _verge_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
	qDelete     = "DELETE FROM _verge_kv WHERE key = ?"
	qSavepoint  = "SAVEPOINT verge_turn"
	qRelease    = "RELEASE verge_turn"
	qRollbackTo = "ROLLBACK TO verge_turn"
)

var preparedQueries = []string{qGet, qPut, qDelete, qSavepoint, qRelease, qRollbackTo}

// Alarms opens the namespace's alarm index.
func (s *SQLiteStore) Alarms(ctx context.Context, namespace string) (AlarmStore, error) {
	if err := checkNamespace(namespace); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.alarms[namespace]; a != nil {
		return a, nil
	}
	db, err := sqlitedb.Open(ctx, filepath.Join(s.dir, namespace, "_alarms.sqlite"), sqlitedb.Options{MaxConns: 1})
	if err != nil {
		return nil, fmt.Errorf("durable: alarms: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS alarms (
		id BLOB NOT NULL PRIMARY KEY, at INTEGER NOT NULL, retries INTEGER NOT NULL DEFAULT 0)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("durable: alarms: %w", err)
	}
	a := &sqliteAlarms{db: db}
	s.alarms[namespace] = a
	return a, nil
}

// Close closes the alarm indexes; objects are closed by their namespaces.
func (s *SQLiteStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for k, a := range s.alarms {
		errs = append(errs, a.db.Close())
		delete(s.alarms, k)
	}
	return errors.Join(errs...)
}

// sqliteObject is one object's database. Its frequent statements are prepared once: the
// database has a single connection, so a transaction reuses them without preparing again.
type sqliteObject struct {
	db      *sql.DB
	sandbox *sqlitedb.Sandbox
	stmts   map[string]*sql.Stmt // used from one goroutine at a time (the object's turns)
}

func (o *sqliteObject) Begin(ctx context.Context) (Txn, error) {
	// The batch outlives the request that opened it (later requests join it and it commits
	// after the last): the request's cancellation must not roll it back.
	tx, err := o.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("durable: begin: %w", err)
	}
	return &sqliteTxn{tx: tx, o: o}, nil
}

func (o *sqliteObject) Close() error {
	for _, st := range o.stmts {
		st.Close()
	}
	return o.db.Close()
}

type sqliteTxn struct {
	tx *sql.Tx
	o  *sqliteObject
	// aborted is set when SQLite rolled the whole batch back (an interrupted or failed
	// writing statement); every later call fails with it.
	aborted error
}

var _ interface{ Aborted() bool } = (*sqliteTxn)(nil)

// Aborted reports whether the batch was rolled back under the caller and can only fail.
func (t *sqliteTxn) Aborted() bool { return t.aborted != nil }

// exec runs a statement, through the prepared one when there is one.
func (t *sqliteTxn) exec(query string, args ...any) (sql.Result, error) {
	if t.aborted != nil {
		return nil, t.aborted
	}
	if st := t.o.stmts[query]; st != nil {
		return t.tx.Stmt(st).Exec(args...)
	}
	return t.tx.Exec(query, args...)
}

func checkKeys(keys []string) error {
	if len(keys) > MaxBatchKeys {
		return fmt.Errorf("durable: %d keys exceed %d per call: %w", len(keys), MaxBatchKeys, ErrInvalid)
	}
	for _, k := range keys {
		if len(k) > MaxKeyBytes {
			return fmt.Errorf("durable: key of %d bytes exceeds %d: %w", len(k), MaxKeyBytes, ErrInvalid)
		}
	}
	return nil
}

func (t *sqliteTxn) Get(keys []string) ([][]byte, error) {
	if t.aborted != nil {
		return nil, t.aborted
	}
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		var v []byte
		err := t.tx.Stmt(t.o.stmts[qGet]).QueryRow([]byte(k)).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, fmt.Errorf("durable: get: %w", err)
		default:
			if v == nil {
				v = []byte{}
			}
			out[i] = v
		}
	}
	return out, nil
}

func (t *sqliteTxn) Put(entries []Entry) error {
	if len(entries) > MaxBatchKeys {
		return fmt.Errorf("durable: %d entries exceed %d per call: %w", len(entries), MaxBatchKeys, ErrInvalid)
	}
	for _, e := range entries {
		if len(e.Key) > MaxKeyBytes {
			return fmt.Errorf("durable: key of %d bytes exceeds %d: %w", len(e.Key), MaxKeyBytes, ErrInvalid)
		}
		if len(e.Value) > MaxValueBytes {
			return fmt.Errorf("durable: value of %d bytes exceeds %d: %w", len(e.Value), MaxValueBytes, ErrInvalid)
		}
	}
	for _, e := range entries {
		v := e.Value
		if v == nil {
			v = []byte{}
		}
		if _, err := t.exec(qPut, []byte(e.Key), v); err != nil {
			return fmt.Errorf("durable: put: %w", err)
		}
	}
	return nil
}

func (t *sqliteTxn) Delete(keys []string) (int, error) {
	if err := checkKeys(keys); err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		r, err := t.exec(qDelete, []byte(k))
		if err != nil {
			return n, fmt.Errorf("durable: delete: %w", err)
		}
		c, _ := r.RowsAffected()
		n += int(c)
	}
	return n, nil
}

// prefixEnd returns the smallest key above every key starting with p, nil when none is.
func prefixEnd(p string) []byte {
	end := []byte(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (t *sqliteTxn) List(o ListOptions) ([]Entry, error) {
	if t.aborted != nil {
		return nil, t.aborted
	}
	var where []string
	var args []any
	lo := o.Prefix
	if o.Start > lo {
		lo = o.Start
	}
	if lo != "" {
		where = append(where, "key >= ?")
		args = append(args, []byte(lo))
	}
	hi := prefixEnd(o.Prefix)
	if o.End != "" && (hi == nil || o.End < string(hi)) {
		hi = []byte(o.End)
	}
	if hi != nil {
		where = append(where, "key < ?")
		args = append(args, hi)
	}
	q := "SELECT key, value FROM _verge_kv"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if o.Reverse {
		q += " ORDER BY key DESC"
	} else {
		q += " ORDER BY key"
	}
	if o.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, o.Limit)
	}
	rows, err := t.tx.Query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("durable: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("durable: list: %w", err)
		}
		out = append(out, Entry{Key: string(k), Value: v})
	}
	return out, rows.Err()
}

func (t *sqliteTxn) DeleteAll() error {
	if t.aborted != nil {
		return t.aborted
	}
	// Dropping the object's tables runs their foreign-key actions and the triggers those
	// fire: code of the object's, so under the statement time limit.
	err := t.o.sandbox.Bound(t.deleteAll)
	t.checkAborted(err)
	return err
}

// checkAborted records, after a statement of the object's failed with err, whether SQLite
// rolled the whole batch back (an interrupted or failed writing statement does).
func (t *sqliteTxn) checkAborted(err error) {
	if err != nil && !t.o.sandbox.InTransaction() {
		t.aborted = fmt.Errorf("durable: the write batch was rolled back by SQLite (%w)", err)
	}
}

func (t *sqliteTxn) deleteAll() error {
	rows, err := t.tx.Query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_verge_kv'")
	if err != nil {
		return fmt.Errorf("durable: delete all: %w", err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("durable: delete all: %w", err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	for _, n := range tables {
		if _, err := t.tx.Exec(`DROP TABLE IF EXISTS "` + strings.ReplaceAll(n, `"`, `""`) + `"`); err != nil {
			return fmt.Errorf("durable: delete all: drop %s: %w", n, err)
		}
	}
	if _, err := t.tx.Exec("DELETE FROM _verge_kv"); err != nil {
		return fmt.Errorf("durable: delete all: %w", err)
	}
	return nil
}

func (t *sqliteTxn) SQL(query string, args []Value) (*SQLResult, error) {
	if t.aborted != nil {
		return nil, t.aborted
	}
	var before int64
	if err := t.tx.QueryRow("SELECT total_changes()").Scan(&before); err != nil {
		return nil, fmt.Errorf("durable: sql: %w", err)
	}
	res := &SQLResult{}
	err := t.o.sandbox.Run(query, func() error { return t.query(res, query, args) })
	if err != nil {
		t.checkAborted(err)
		return nil, fmt.Errorf("durable: sql: %w", err)
	}
	var after int64
	if err := t.tx.QueryRow("SELECT total_changes()").Scan(&after); err != nil {
		return nil, fmt.Errorf("durable: sql: %w", err)
	}
	res.RowsWritten = after - before
	return res, nil
}

// query runs the statement and collects its result, at most MaxSQLResultBytes of it.
func (t *sqliteTxn) query(res *SQLResult, query string, args []Value) error {
	rows, err := t.tx.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if res.Columns, err = rows.Columns(); err != nil {
		return err
	}
	size := 0
	for rows.Next() {
		row := make([]Value, len(res.Columns))
		ptrs := make([]any, len(row))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range row {
			size += 16
			switch x := v.(type) {
			case int:
				row[i] = int64(x)
			case bool:
				if x {
					row[i] = int64(1)
				} else {
					row[i] = int64(0)
				}
			case time.Time:
				row[i] = x.Format(time.RFC3339Nano)
			case string:
				size += len(x)
			case []byte:
				size += len(x)
			}
		}
		if size > MaxSQLResultBytes {
			return fmt.Errorf("result exceeds %d bytes: %w", MaxSQLResultBytes, ErrInvalid)
		}
		res.Rows = append(res.Rows, row)
	}
	return rows.Err()
}

func (t *sqliteTxn) Savepoint(name string) error {
	_, err := t.exec("SAVEPOINT " + name)
	return err
}

func (t *sqliteTxn) Release(name string) error {
	_, err := t.exec("RELEASE " + name)
	return err
}

func (t *sqliteTxn) RollbackTo(name string) error {
	if _, err := t.exec("ROLLBACK TO " + name); err != nil {
		return err
	}
	_, err := t.exec("RELEASE " + name)
	return err
}

func (t *sqliteTxn) Commit() error {
	if t.aborted != nil {
		_ = t.tx.Rollback() // releases the connection; SQLite has no transaction left
		return t.aborted
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("durable: commit: %w", err)
	}
	return nil
}

func (t *sqliteTxn) Rollback() error { return t.tx.Rollback() }

type sqliteAlarms struct{ db *sql.DB }

func (a *sqliteAlarms) Get(ctx context.Context, id ID) (Alarm, bool, error) {
	var at int64
	var retries int
	err := a.db.QueryRowContext(ctx, "SELECT at, retries FROM alarms WHERE id = ?", id[:]).Scan(&at, &retries)
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, false, nil
	}
	if err != nil {
		return Alarm{}, false, fmt.Errorf("durable: alarm: %w", err)
	}
	return Alarm{ID: id, At: time.UnixMilli(at), Retries: retries}, true, nil
}

func (a *sqliteAlarms) Set(ctx context.Context, id ID, at time.Time) error {
	_, err := a.db.ExecContext(ctx, `INSERT INTO alarms (id, at, retries) VALUES (?, ?, 0)
		ON CONFLICT (id) DO UPDATE SET at = excluded.at, retries = 0`, id[:], at.UnixMilli())
	if err != nil {
		return fmt.Errorf("durable: set alarm: %w", err)
	}
	return nil
}

func (a *sqliteAlarms) Delete(ctx context.Context, id ID) error {
	if _, err := a.db.ExecContext(ctx, "DELETE FROM alarms WHERE id = ?", id[:]); err != nil {
		return fmt.Errorf("durable: delete alarm: %w", err)
	}
	return nil
}

func (a *sqliteAlarms) Next(ctx context.Context) (Alarm, bool, error) {
	var idb []byte
	var at int64
	var retries int
	err := a.db.QueryRowContext(ctx, "SELECT id, at, retries FROM alarms ORDER BY at LIMIT 1").Scan(&idb, &at, &retries)
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, false, nil
	}
	if err != nil {
		return Alarm{}, false, fmt.Errorf("durable: next alarm: %w", err)
	}
	var id ID
	copy(id[:], idb)
	return Alarm{ID: id, At: time.UnixMilli(at), Retries: retries}, true, nil
}

func (a *sqliteAlarms) Reschedule(ctx context.Context, id ID, prev, at time.Time, retries int) error {
	_, err := a.db.ExecContext(ctx, "UPDATE alarms SET at = ?, retries = ? WHERE id = ? AND at = ?",
		at.UnixMilli(), retries, id[:], prev.UnixMilli())
	if err != nil {
		return fmt.Errorf("durable: reschedule alarm: %w", err)
	}
	return nil
}

func (a *sqliteAlarms) Done(ctx context.Context, id ID, prev time.Time) error {
	if _, err := a.db.ExecContext(ctx, "DELETE FROM alarms WHERE id = ? AND at = ?", id[:], prev.UnixMilli()); err != nil {
		return fmt.Errorf("durable: alarm done: %w", err)
	}
	return nil
}
