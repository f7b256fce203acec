package durable

import (
	"context"
	"errors"
	"time"
)

// Limits of the key-value storage API.
const (
	// MaxKeyBytes bounds a storage key.
	MaxKeyBytes = 2048
	// MaxValueBytes bounds a storage value (2 MiB).
	MaxValueBytes = 2 << 20
	// MaxBatchKeys bounds the keys of one multi-key get, put or delete.
	MaxBatchKeys = 128
)

// ErrInvalid is wrapped by errors about invalid arguments (limits, IDs).
var ErrInvalid = errors.New("invalid argument")

// Entry is one key and value.
type Entry struct {
	Key   string
	Value []byte
}

// ListOptions select entries of a listing.
type ListOptions struct {
	// Prefix restricts keys to those starting with it.
	Prefix string
	// Start is the first key included. Empty means from the first key.
	Start string
	// End is the first key excluded. Empty means to the last key.
	End string
	// Reverse lists in descending order.
	Reverse bool
	// Limit caps the entries. Zero means no limit.
	Limit int
}

// Value is a SQL value: nil, int64, float64, string or []byte.
type Value = any

// SQLResult is the result of one SQL statement.
type SQLResult struct {
	// Columns are the result column names.
	Columns []string
	// Rows are the result rows.
	Rows [][]Value
	// RowsWritten counts rows inserted, updated or deleted by the statement.
	RowsWritten int64
}

// Store is the storage backend of Durable Objects: it opens an object's storage. The
// embedded backend is SQLiteStore; a replicated backend implements the same interfaces.
type Store interface {
	// Open opens the storage of object id of namespace, creating it when needed.
	Open(ctx context.Context, namespace string, id ID) (ObjectStore, error)
	// Alarms returns the alarm index of namespace.
	Alarms(ctx context.Context, namespace string) (AlarmStore, error)
	// Close releases the backend.
	Close() error
}

// ObjectStore is one object's storage. The namespace uses it from one goroutine at a time.
type ObjectStore interface {
	// Begin starts a write batch. Writes of every request in it become durable together at
	// Commit.
	Begin(ctx context.Context) (Txn, error)
	// Close releases the storage; a batch in progress is rolled back.
	Close() error
}

// Txn is an open write batch of one object. Savepoints nest inside it: each request runs in
// one (so a failed request's writes are undone) and so does each explicit transaction.
type Txn interface {
	// Get returns the values of keys, nil for absent keys.
	Get(keys []string) ([][]byte, error)
	// Put stores entries.
	Put(entries []Entry) error
	// Delete removes keys and returns how many existed.
	Delete(keys []string) (int, error)
	// List returns entries in key order.
	List(o ListOptions) ([]Entry, error)
	// DeleteAll removes every key and every SQL table.
	DeleteAll() error
	// SQL runs one statement with positional arguments.
	SQL(query string, args []Value) (*SQLResult, error)
	// Savepoint, Release and RollbackTo manage nested savepoints by name.
	Savepoint(name string) error
	Release(name string) error
	RollbackTo(name string) error
	// Commit makes the batch durable.
	Commit() error
	// Rollback abandons the batch.
	Rollback() error
}

// Alarm is one scheduled alarm.
type Alarm struct {
	// ID is the object.
	ID ID
	// At is when it is due.
	At time.Time
	// Retries counts failed attempts so far.
	Retries int
}

// AlarmStore is the persistent alarm index of one namespace. Each object has at most one
// alarm. Every change is durable when the method returns.
type AlarmStore interface {
	// Get returns the object's alarm; ok is false when none is set.
	Get(ctx context.Context, id ID) (a Alarm, ok bool, err error)
	// Set sets the object's alarm to at with Retries 0.
	Set(ctx context.Context, id ID, at time.Time) error
	// Delete removes the object's alarm.
	Delete(ctx context.Context, id ID) error
	// Next returns the earliest alarm; ok is false when there is none.
	Next(ctx context.Context) (a Alarm, ok bool, err error)
	// Reschedule moves the alarm of id, if it is still due at prev, to at with retries.
	Reschedule(ctx context.Context, id ID, prev, at time.Time, retries int) error
	// Done removes the alarm of id if it is still due at prev (it was not set again while
	// it ran).
	Done(ctx context.Context, id ID, prev time.Time) error
}

// AlarmDeferrer is an AlarmStore shared by several processes (a cluster's alarm index, which
// every node's namespace runs its scheduler over). When firing an alarm fails because
// another process owns the object (the claim's error wraps ErrOwnedElsewhere), the
// namespace calls Defer instead of counting a failed attempt: the owner fires it.
type AlarmDeferrer interface {
	// Defer hides the alarm of id, if it is still due at at, from this process's Next
	// until until, without changing the shared entry; the store wakes the scheduler (see
	// AlarmNotifier) when the deferral ends.
	Defer(id ID, at, until time.Time)
}

// AlarmNotifier is an AlarmStore that other processes change too. The namespace registers
// its scheduler's wake-up with Notify; the store calls it (without blocking, from any
// goroutine) whenever Next may return something else than before.
type AlarmNotifier interface {
	// Notify registers f to be called on every such change until stop is called.
	Notify(f func()) (stop func())
}

// ErrOwnedElsewhere is wrapped by the errors of claims (Placement.Claim,
// LeasePlacement.ClaimLease) refused because another process owns the object. An alarm
// whose firing fails with it is deferred (AlarmDeferrer), not retried as a failure.
var ErrOwnedElsewhere = errors.New("durable: object owned by another process")

// Placement decides which process serves an object. The embedded deployment places every
// object here (Local); a multi-node backend claims ownership with fencing so that an object
// has one live instance across nodes.
type Placement interface {
	// Claim makes this process the owner of the object until release is called. It fails
	// when another process owns it.
	Claim(ctx context.Context, namespace string, id ID) (release func(), err error)
}

// Lease is a claim that can end by itself: a multi-node placement's lease, which lapses
// when it cannot be renewed and is lost when another process takes the object over.
type Lease interface {
	// Valid reports whether the object may be served here now.
	Valid() bool
	// Lost is closed when the lease ended without Release; the object must be dropped.
	Lost() <-chan struct{}
	// Release gives the lease back after the object stopped being served.
	Release()
}

// LeasePlacement is a Placement whose claims are leases. A namespace whose placement is one
// runs a turn only while the object's lease is Valid, commits a batch only if it still is
// (otherwise the batch is rolled back and its requests fail with ErrLeaseLost), and
// activates the object again (claiming anew) once the lease is lost.
type LeasePlacement interface {
	Placement
	// ClaimLease claims the object as Claim does and returns the lease.
	ClaimLease(ctx context.Context, namespace string, id ID) (Lease, error)
}

// ErrLeaseLost is wrapped by errors of requests refused or undone because this process's
// lease on the object lapsed or was lost; another process may serve the object now.
var ErrLeaseLost = errors.New("durable: object lease lost")

// Local is the single-process placement: every claim succeeds.
type Local struct{}

// Claim always succeeds.
func (Local) Claim(context.Context, string, ID) (func(), error) { return func() {}, nil }
