package kv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/sqlitedb"
)

// SweepInterval is how often SQLiteStore deletes expired keys from open namespaces.
const SweepInterval = 10 * time.Minute

// validName is what a namespace name may look like: it becomes a file name.
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// SQLiteStore keeps each namespace in its own SQLite file, <Dir>/<name>.sqlite, in WAL mode
// with synchronous=FULL, so that every acknowledged write survives a crash.
type SQLiteStore struct {
	dir string
	now func() time.Time

	mu     sync.Mutex
	ns     map[string]*sqliteNS
	ro     map[string]*sqliteNS // opened by OpenExisting
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

var _ Store = (*SQLiteStore)(nil)

// OpenSQLite returns a store keeping its namespaces under dir, which is created with the
// first namespace.
func OpenSQLite(dir string) (*SQLiteStore, error) {
	s := &SQLiteStore{dir: dir, now: time.Now, ns: map[string]*sqliteNS{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.sweepLoop()
	return s, nil
}

// Names lists the namespaces that exist on disk, sorted.
func (s *SQLiteStore) Names() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".sqlite"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Namespace opens the namespace name, creating its file when missing. Names are 1 to 128
// characters of letters, digits, '_', '-' and '.', not starting with '-' or '.'.
func (s *SQLiteStore) Namespace(ctx context.Context, name string) (Namespace, error) {
	return s.open(ctx, name, false)
}

// ErrNamespaceNotFound is returned by OpenExisting for a namespace that does not exist.
var ErrNamespaceNotFound = errors.New("namespace not found")

// OpenExisting opens an existing namespace for reading only, as tools that inspect data do:
// it creates no file or directory (a missing namespace is ErrNamespaceNotFound), and its Put
// and Delete fail. It may run beside a server writing the same namespace.
func (s *SQLiteStore) OpenExisting(ctx context.Context, name string) (Namespace, error) {
	return s.open(ctx, name, true)
}

// open returns the namespace's open handle, read-write or read-only, opening it first.
func (s *SQLiteStore) open(ctx context.Context, name string, readOnly bool) (Namespace, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("kv: invalid namespace name %q: %w", name, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("kv: store closed")
	}
	open := &s.ns
	if readOnly {
		open = &s.ro
	}
	if n := (*open)[name]; n != nil {
		return n, nil
	}
	db, err := sqlitedb.Open(ctx, filepath.Join(s.dir, name+".sqlite"), sqlitedb.Options{MaxConns: 4, ReadOnly: readOnly})
	if readOnly && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kv: %w: %s (in %s)", ErrNamespaceNotFound, name, s.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("kv: namespace %s: %w", name, err)
	}
	if !readOnly {
		const schema = `CREATE TABLE IF NOT EXISTS kv (
		key BLOB NOT NULL PRIMARY KEY,
		value BLOB NOT NULL,
		metadata BLOB,
		expiration INTEGER NOT NULL DEFAULT 0
	)`
		if _, err := db.ExecContext(ctx, schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("kv: namespace %s: %w", name, err)
		}
	}
	n := &sqliteNS{name: name, db: db, now: s.now}
	if *open == nil {
		*open = map[string]*sqliteNS{}
	}
	(*open)[name] = n
	return n, nil
}

// Close closes every namespace.
func (s *SQLiteStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, n := range s.ns {
		errs = append(errs, n.db.Close())
	}
	for _, n := range s.ro {
		errs = append(errs, n.db.Close())
	}
	return errors.Join(errs...)
}

// sweepLoop deletes expired keys every SweepInterval until Close.
func (s *SQLiteStore) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			list := make([]*sqliteNS, 0, len(s.ns))
			for _, n := range s.ns {
				list = append(list, n)
			}
			s.mu.Unlock()
			for _, n := range list {
				_, _ = n.db.Exec("DELETE FROM kv WHERE expiration != 0 AND expiration <= ?", s.now().Unix())
			}
		}
	}
}

// sqliteNS is one namespace's database.
type sqliteNS struct {
	name string
	db   *sql.DB
	now  func() time.Time
}

func (n *sqliteNS) Get(ctx context.Context, key string) (*Entry, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	var e Entry
	var exp int64
	err := n.db.QueryRowContext(ctx,
		"SELECT value, metadata, expiration FROM kv WHERE key = ? AND (expiration = 0 OR expiration > ?)",
		[]byte(key), n.now().Unix()).Scan(&e.Value, &e.Metadata, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: get from %s: %w", n.name, err)
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	if exp != 0 {
		e.Expiration = time.Unix(exp, 0)
	}
	return &e, nil
}

func (n *sqliteNS) Put(ctx context.Context, key string, value []byte, o PutOptions) error {
	exp, err := CheckPut(key, value, o, n.now())
	if err != nil {
		return err
	}
	var expUnix int64
	if !exp.IsZero() {
		expUnix = exp.Unix()
	}
	if value == nil {
		value = []byte{}
	}
	var meta any
	if o.Metadata != nil {
		meta = o.Metadata
	}
	_, err = n.db.ExecContext(ctx,
		`INSERT INTO kv (key, value, metadata, expiration) VALUES (?, ?, ?, ?)
		 ON CONFLICT (key) DO UPDATE SET value = excluded.value, metadata = excluded.metadata, expiration = excluded.expiration`,
		[]byte(key), value, meta, expUnix)
	if err != nil {
		return fmt.Errorf("kv: put to %s: %w", n.name, err)
	}
	return nil
}

func (n *sqliteNS) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if _, err := n.db.ExecContext(ctx, "DELETE FROM kv WHERE key = ?", []byte(key)); err != nil {
		return fmt.Errorf("kv: delete from %s: %w", n.name, err)
	}
	return nil
}

// prefixEnd returns the smallest key greater than every key starting with p, or nil when
// there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (n *sqliteNS) List(ctx context.Context, o ListOptions) (*ListResult, error) {
	limit, err := CheckList(o)
	if err != nil {
		return nil, err
	}
	after := []byte(o.Prefix)
	op := ">="
	if o.Cursor != "" {
		c, err := DecodeCursor(o.Cursor, o.Prefix)
		if err != nil {
			return nil, err
		}
		after, op = []byte(c), ">"
	}
	q := "SELECT key, metadata, expiration FROM kv WHERE key " + op + " ? AND (expiration = 0 OR expiration > ?)"
	args := []any{after, n.now().Unix()}
	if end := prefixEnd([]byte(o.Prefix)); end != nil {
		q += " AND key < ?"
		args = append(args, end)
	}
	q += " ORDER BY key LIMIT ?"
	args = append(args, limit+1)
	rows, err := n.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("kv: list %s: %w", n.name, err)
	}
	defer rows.Close()
	res := &ListResult{Keys: []Key{}}
	for rows.Next() {
		var k []byte
		var meta []byte
		var exp int64
		if err := rows.Scan(&k, &meta, &exp); err != nil {
			return nil, fmt.Errorf("kv: list %s: %w", n.name, err)
		}
		if len(res.Keys) == limit {
			res.Cursor = EncodeCursor(res.Keys[limit-1].Name)
			return res, nil
		}
		key := Key{Name: string(k), Metadata: meta}
		if exp != 0 {
			key.Expiration = time.Unix(exp, 0)
		}
		res.Keys = append(res.Keys, key)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("kv: list %s: %w", n.name, err)
	}
	res.ListComplete = true
	return res, nil
}
