package sdk

import (
	"errors"
	"fmt"
	"github.com/verge-edge/verge/internal/workerabi"
	"math"
	"time"
)

// DurableObjectNamespace is a Durable Object namespace bound to the worker, as returned by
// DurableObject.
type DurableObjectNamespace struct{ name string }

// DurableObject returns the Durable Object namespace bound to the worker under name.
func DurableObject(name string) *DurableObjectNamespace { return &DurableObjectNamespace{name: name} }

// ObjectID identifies one Durable Object of a namespace. Its Fetch sends a request to the
// object, creating the object's live instance if it has none.
type ObjectID struct {
	ns  string
	id  string
	err error
}

// String returns the ID's 64-hex-digit form, accepted by IDFromString.
func (id ObjectID) String() string { return id.id }

// Err returns the error that made the ID, if any; Fetch returns it too.
func (id ObjectID) Err() error { return id.err }

func (ns *DurableObjectNamespace) idCall(op uint32, s string, withArg bool) ObjectID {
	var e workerabi.Encoder
	e.Str(ns.name)
	if withArg {
		e.Str(s)
	}
	res, err := rawCall(op, e.B)
	if err != nil {
		return ObjectID{ns: ns.name, err: err}
	}
	d := workerabi.Decoder{B: res}
	return ObjectID{ns: ns.name, id: d.Str(), err: d.Err}
}

// IDFromName returns the ID for name: the same name always gives the same ID.
func (ns *DurableObjectNamespace) IDFromName(name string) ObjectID {
	return ns.idCall(workerabi.OpDOIDFromName, name, true)
}

// NewUniqueID returns a new random ID.
func (ns *DurableObjectNamespace) NewUniqueID() ObjectID {
	return ns.idCall(workerabi.OpDONewID, "", false)
}

// IDFromString parses the String form of an ID of this namespace.
func (ns *DurableObjectNamespace) IDFromString(s string) (ObjectID, error) {
	id := ns.idCall(workerabi.OpDOIDFromStr, s, true)
	return id, id.err
}

// Fetch sends r to the object and returns its response. Requests to one object are
// delivered one at a time, and the response is released only after the object's storage
// writes made while handling r are durable. When the object runs on this node its response
// streams: Fetch returns once the object released its head (it flushed, wrote 64 KiB, or
// finished), and Body reads the rest as the object writes it, each part released only after
// the writes made before it are durable. Across a cluster the response arrives whole. The Verge-RPC header is reserved for Call and
// removed from r's copy that is sent. When r's body is the incoming request's Body (r
// itself, or a request made with that Body), unread or partly read, the host streams the
// rest of it to an object on this node, which reads it as it arrives (for an object on
// another node of a cluster it is read whole first, at most 32 MiB); any other body is read
// whole first.
func (id ObjectID) Fetch(r *Request) (*Response, error) {
	if id.err != nil {
		return nil, id.err
	}
	if r.Header.Get(rpcHeader) != "" {
		// The RPC marker is reserved for Call: a request forwarded from a client must not
		// reach an object's methods by carrying it.
		c := *r
		c.Header = Header{fields: append([]Field(nil), r.Header.fields...)}
		c.Header.Del(rpcHeader)
		r = &c
	}
	return objectFetch(id, r)
}

// objectFetch sends a request to an object; tests without a host replace it.
var objectFetch = ObjectID.fetch

// fetch sends r to the object as it is. When r's body is the incoming request's (passesBody)
// the host streams it to the object.
func (id ObjectID) fetch(r *Request) (*Response, error) {
	var e workerabi.Encoder
	e.Str(id.ns)
	e.Str(id.id)
	return sendRequest(&e, r, workerabi.OpDOFetchBody, workerabi.OpDOFetchStream, mayInterleave)
}

// DurableObjectHandler is an instance of a Durable Object class: it answers the requests
// sent to its object.
type DurableObjectHandler interface {
	Fetch(w ResponseWriter, r *Request)
}

// AlarmHandler is implemented by Durable Object classes that use alarms.
type AlarmHandler interface {
	// Alarm runs when the alarm set with Storage.SetAlarm is due. A non-nil error (or a
	// failed invocation) makes the host retry it with exponential backoff, up to 6 retries.
	Alarm(info AlarmInfo) error
}

// AlarmInfo describes an alarm invocation.
type AlarmInfo struct {
	// RetryCount is 0 on the first attempt.
	RetryCount int
	// IsRetry is true when an earlier attempt failed.
	IsRetry bool
}

// DurableObjectState is what an object instance gets from the host: its ID and storage.
type DurableObjectState struct {
	id      string
	ns      string
	storage Storage
	methods map[string]rpcMethod // registered with HandleRPC
}

// ID returns the object's ID in its String form.
func (s *DurableObjectState) ID() string { return s.id }

// Namespace returns the binding name of the object's namespace as seen by this worker.
func (s *DurableObjectState) Namespace() string { return s.ns }

// Storage returns the object's transactional storage.
func (s *DurableObjectState) Storage() *Storage { return &s.storage }

var (
	classes = map[string]func(*DurableObjectState) DurableObjectHandler{}
	// objects are the live objects this instance hosts, by ID: the host may place several
	// objects of the worker's version in one instance (ABI version 2), each created on its
	// first invocation here and dropped when the host evicts it (evictObject).
	objects = map[string]*liveObject{}
)

// liveObject is an object's instance with the state it was made with.
type liveObject struct {
	h     DurableObjectHandler
	state *DurableObjectState
}

// DefineDurableObject registers the Durable Object class named class (the class name
// configured for a namespace). The host makes one live instance per object ID by calling
// newObject once; the instance stays in memory between requests until the host evicts it.
// Several objects may live in one WebAssembly instance (one at a time runs): keep an
// object's state in its value, not in package-level variables.
func DefineDurableObject(class string, newObject func(state *DurableObjectState) DurableObjectHandler) {
	classes[class] = newObject
}

// objectContext loads the current invocation's object, creating its instance when needed.
func objectContext() (*liveObject, AlarmInfo, error) {
	res, err := rawCall(workerabi.OpDOContext, nil)
	if err != nil {
		return nil, AlarmInfo{}, err
	}
	d := workerabi.Decoder{B: res}
	ns, class, id := d.Str(), d.Str(), d.Str()
	retries := int(d.U32())
	if d.Err != nil {
		return nil, AlarmInfo{}, d.Err
	}
	info := AlarmInfo{RetryCount: retries, IsRetry: retries > 0}
	if o := objects[id]; o != nil {
		return o, info, nil
	}
	newObject := classes[class]
	if newObject == nil {
		return nil, info, fmt.Errorf("durable object class %q is not defined (sdk.DefineDurableObject)", class)
	}
	state := &DurableObjectState{id: id, ns: ns}
	o := &liveObject{h: newObject(state), state: state}
	objects[id] = o
	return o, info, nil
}

// evictObject drops the evicted object named by the invocation's context (KindDOEvict).
func evictObject() error {
	res, err := rawCall(workerabi.OpDOContext, nil)
	if err != nil {
		return err
	}
	d := workerabi.Decoder{B: res}
	d.Str()
	d.Str()
	id := d.Str()
	if d.Err != nil {
		return d.Err
	}
	delete(objects, id)
	return nil
}

// serveObject answers a request to an object: an RPC call (see rpc.go) goes to the method
// registered with HandleRPC, anything else to the class's Fetch.
func serveObject() error {
	o, _, err := objectContext()
	if err != nil {
		return err
	}
	return serveRequest(HandlerFunc(func(w ResponseWriter, r *Request) {
		if isRPC(r) {
			serveRPC(o.state, w, r)
			return
		}
		o.h.Fetch(w, r)
	}))
}

// errAlarmFailed is the alarm handler's failure: the host retries, keeping the instance.
var errAlarmFailed = errors.New("alarm failed")

func runAlarm() error {
	o, info, err := objectContext()
	if err != nil {
		return err
	}
	a, ok := o.h.(AlarmHandler)
	if !ok {
		return nil
	}
	if err := a.Alarm(info); err != nil {
		Log(LevelWarn, "alarm failed: %v", err)
		return errAlarmFailed
	}
	return nil
}

// Storage is a Durable Object's storage: an ordered key-value store and a SQL database in
// one. Every operation of one request belongs to an implicit transaction, committed before
// the response is released (the output gate); Transaction nests an explicit one.
type Storage struct{}

// StorageEntry is one key and value of a listing.
type StorageEntry struct {
	Key   string
	Value []byte
}

// Get returns the value of key; ok is false when it is absent.
func (s *Storage) Get(key string) (value []byte, ok bool, err error) {
	m, err := s.GetMany([]string{key})
	if err != nil {
		return nil, false, err
	}
	value, ok = m[key]
	return value, ok, nil
}

// GetMany returns the values of the present keys among keys (up to 128).
func (s *Storage) GetMany(keys []string) (map[string][]byte, error) {
	var e workerabi.Encoder
	e.U32(uint32(len(keys)))
	for _, k := range keys {
		e.Str(k)
	}
	res, err := rawCall(workerabi.OpStGet, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	n := int(d.U32())
	m := make(map[string][]byte, n)
	for i := 0; i < n && i < len(keys) && d.Err == nil; i++ {
		found := d.U8() == 1
		v := cloneBytes(&d)
		if found {
			m[keys[i]] = v
		}
	}
	return m, d.Err
}

// Put stores value under key (keys up to 2 KiB, values up to 2 MiB; larger ones fail with
// ErrInvalid).
func (s *Storage) Put(key string, value []byte) error {
	return s.PutMany([]StorageEntry{{Key: key, Value: value}})
}

// PutMany stores up to 128 entries at once.
func (s *Storage) PutMany(entries []StorageEntry) error {
	var e workerabi.Encoder
	e.U32(uint32(len(entries)))
	for _, en := range entries {
		e.Str(en.Key)
		e.Bytes(en.Value)
	}
	_, err := rawCall(workerabi.OpStPut, e.B)
	return err
}

// Delete removes key and reports whether it existed.
func (s *Storage) Delete(key string) (bool, error) {
	n, err := s.DeleteMany([]string{key})
	return n > 0, err
}

// DeleteMany removes keys (up to 128) and returns how many existed.
func (s *Storage) DeleteMany(keys []string) (int, error) {
	var e workerabi.Encoder
	e.U32(uint32(len(keys)))
	for _, k := range keys {
		e.Str(k)
	}
	res, err := rawCall(workerabi.OpStDelete, e.B)
	if err != nil {
		return 0, err
	}
	d := workerabi.Decoder{B: res}
	return int(d.U32()), d.Err
}

// ListOptions select the entries of List.
type ListOptions struct {
	// Prefix restricts keys to those starting with it.
	Prefix string
	// Start is the first key included (inclusive). Empty means from the beginning.
	Start string
	// End is the first key excluded. Empty means to the end.
	End string
	// Reverse lists in descending key order.
	Reverse bool
	// Limit caps the entries returned. Zero means no limit.
	Limit int
}

// List returns entries in key order (UTF-8 byte order).
func (s *Storage) List(o ListOptions) ([]StorageEntry, error) {
	var e workerabi.Encoder
	e.Str(o.Prefix)
	e.Str(o.Start)
	e.Str(o.End)
	e.Bool(o.Reverse)
	e.U32(uint32(o.Limit))
	res, err := rawCall(workerabi.OpStList, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	n := int(d.U32())
	out := make([]StorageEntry, 0, min(n, 1024))
	for i := 0; i < n && d.Err == nil; i++ {
		out = append(out, StorageEntry{Key: d.Str(), Value: cloneBytes(&d)})
	}
	return out, d.Err
}

// DeleteAll removes every key, every SQL table and the alarm of the object.
func (s *Storage) DeleteAll() error {
	_, err := rawCall(workerabi.OpStDeleteAll, nil)
	return err
}

// Transaction runs fn in a nested transaction: when fn returns an error or panics, its
// writes are rolled back (and the error returned); otherwise they join the request's writes.
func (s *Storage) Transaction(fn func() error) (err error) {
	if _, err := rawCall(workerabi.OpStTxnBegin, nil); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_, _ = rawCall(workerabi.OpStTxnRollback, nil)
		}
	}()
	if err := fn(); err != nil {
		done = true
		if _, rerr := rawCall(workerabi.OpStTxnRollback, nil); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	done = true
	_, err = rawCall(workerabi.OpStTxnCommit, nil)
	return err
}

// Cursor is the result of a SQL statement.
type Cursor struct {
	// Columns are the result column names.
	Columns []string
	// Rows are the result rows; values are nil, int64, float64, string or []byte.
	Rows [][]any
	// RowsWritten counts rows changed by the statement.
	RowsWritten int64
}

// SQL runs one SQL statement on the object's database with positional arguments (?), which
// may be nil, bool, ints, floats, string or []byte. Trailing semicolons and comments are
// fine; a second statement is refused (ErrInvalid), as is anything reaching outside the
// object's own tables: table names starting with "_verge" and "sqlite_" are reserved (see
// docs/workers.md, SQL).
func (s *Storage) SQL(query string, args ...any) (*Cursor, error) {
	var e workerabi.Encoder
	e.Str(query)
	e.U32(uint32(len(args)))
	for i, a := range args {
		if err := encodeValue(&e, a); err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	res, err := rawCall(workerabi.OpStSQL, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	c := &Cursor{}
	nc := int(d.U32())
	for i := 0; i < nc && d.Err == nil; i++ {
		c.Columns = append(c.Columns, d.Str())
	}
	nr := int(d.U32())
	for i := 0; i < nr && d.Err == nil; i++ {
		row := make([]any, nc)
		for j := range row {
			row[j] = decodeValue(&d)
		}
		c.Rows = append(c.Rows, row)
	}
	c.RowsWritten = d.I64()
	return c, d.Err
}

// SQL value type tags.
const (
	valNull  = 0
	valInt   = 1
	valFloat = 2
	valText  = 3
	valBlob  = 4
)

func encodeValue(e *workerabi.Encoder, a any) error {
	switch v := a.(type) {
	case nil:
		e.U8(valNull)
	case bool:
		e.U8(valInt)
		if v {
			e.I64(1)
		} else {
			e.I64(0)
		}
	case int:
		e.U8(valInt)
		e.I64(int64(v))
	case int32:
		e.U8(valInt)
		e.I64(int64(v))
	case int64:
		e.U8(valInt)
		e.I64(v)
	case uint32:
		e.U8(valInt)
		e.I64(int64(v))
	case float64:
		e.U8(valFloat)
		e.I64(int64(math.Float64bits(v)))
	case float32:
		e.U8(valFloat)
		e.I64(int64(math.Float64bits(float64(v))))
	case string:
		e.U8(valText)
		e.Str(v)
	case []byte:
		e.U8(valBlob)
		e.Bytes(v)
	default:
		return fmt.Errorf("unsupported SQL value type %T", a)
	}
	return nil
}

func decodeValue(d *workerabi.Decoder) any {
	switch d.U8() {
	case valInt:
		return d.I64()
	case valFloat:
		return d.F64()
	case valText:
		return d.Str()
	case valBlob:
		return cloneBytes(d)
	default:
		return nil
	}
}

// GetAlarm returns when the object's alarm is set to fire; ok is false when none is set.
func (s *Storage) GetAlarm() (t time.Time, ok bool, err error) {
	res, err := rawCall(workerabi.OpAlarmGet, nil)
	if err != nil {
		return time.Time{}, false, err
	}
	d := workerabi.Decoder{B: res}
	set := d.U8() == 1
	ms := d.I64()
	if !set {
		return time.Time{}, false, d.Err
	}
	return time.UnixMilli(ms), true, d.Err
}

// SetAlarm sets (or moves) the object's alarm to t; a time in the past fires at once. The
// alarm runs the class's Alarm method at least once, retried with backoff on failure.
func (s *Storage) SetAlarm(t time.Time) error {
	var e workerabi.Encoder
	e.I64(t.UnixMilli())
	_, err := rawCall(workerabi.OpAlarmSet, e.B)
	return err
}

// DeleteAlarm cancels the object's alarm.
func (s *Storage) DeleteAlarm() error {
	_, err := rawCall(workerabi.OpAlarmDelete, nil)
	return err
}
