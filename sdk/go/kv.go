package sdk

import (
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// KVNamespace is a KV namespace bound to the worker, as returned by KV.
type KVNamespace struct{ name string }

// KV returns the KV namespace bound to the worker under name. Operations on a name the
// worker's configuration does not bind fail with ErrUnavailable.
func KV(name string) *KVNamespace { return &KVNamespace{name: name} }

// KVValue is a value read with its metadata.
type KVValue struct {
	// Value is the stored value.
	Value []byte
	// Metadata is the metadata stored with the value; nil when none was.
	Metadata []byte
	// Expiration is when the key expires; zero when it does not.
	Expiration time.Time
}

// Get returns the value of key; ok is false when the key does not exist or has expired.
func (ns *KVNamespace) Get(key string) (value []byte, ok bool, err error) {
	v, ok, err := ns.get(key, false)
	if v != nil {
		value = v.Value
	}
	return value, ok, err
}

// GetWithMetadata returns the value of key with its metadata and expiration.
func (ns *KVNamespace) GetWithMetadata(key string) (*KVValue, bool, error) {
	return ns.get(key, true)
}

func (ns *KVNamespace) get(key string, meta bool) (*KVValue, bool, error) {
	var e workerabi.Encoder
	e.Str(ns.name)
	e.Str(key)
	e.Bool(meta)
	res, err := rawCall(workerabi.OpKVGet, e.B)
	if err != nil {
		return nil, false, err
	}
	d := workerabi.Decoder{B: res}
	if d.U8() == 0 {
		return nil, false, d.Err
	}
	v := &KVValue{Value: cloneBytes(&d)}
	if d.U8() == 1 {
		v.Metadata = cloneBytes(&d)
	} else {
		cloneBytes(&d)
	}
	if exp := d.I64(); exp > 0 {
		v.Expiration = time.Unix(exp, 0)
	}
	return v, true, d.Err
}

// KVPutOptions are the optional parts of a put.
type KVPutOptions struct {
	// Metadata is stored with the value (up to 1,024 bytes). Nil means none.
	Metadata []byte
	// Expiration is when the key expires; it must be at least 60 seconds ahead. Zero means
	// never (unless ExpirationTTL is set).
	Expiration time.Time
	// ExpirationTTL is how long from now the key lives, at least 60 seconds. Zero means no
	// TTL.
	ExpirationTTL time.Duration
}

// Put stores value under key. Keys are at most 512 bytes, values at most 25 MiB. The value
// is durable when Put returns.
func (ns *KVNamespace) Put(key string, value []byte) error { return ns.PutWith(key, value, nil) }

// PutWith stores value under key with metadata and expiration.
func (ns *KVNamespace) PutWith(key string, value []byte, o *KVPutOptions) error {
	var e workerabi.Encoder
	e.Str(ns.name)
	e.Str(key)
	e.Bytes(value)
	var exp, ttl int64
	if o != nil && o.Metadata != nil {
		e.U8(1)
		e.Bytes(o.Metadata)
	} else {
		e.U8(0)
		e.Bytes(nil)
	}
	if o != nil {
		if !o.Expiration.IsZero() {
			exp = o.Expiration.Unix()
		}
		ttl = int64(o.ExpirationTTL / time.Second)
	}
	e.I64(exp)
	e.I64(ttl)
	_, err := rawCall(workerabi.OpKVPut, e.B)
	return err
}

// Delete removes key; deleting a missing key is not an error.
func (ns *KVNamespace) Delete(key string) error {
	var e workerabi.Encoder
	e.Str(ns.name)
	e.Str(key)
	_, err := rawCall(workerabi.OpKVDelete, e.B)
	return err
}

// KVListOptions select the keys List returns.
type KVListOptions struct {
	// Prefix restricts the keys to those starting with it.
	Prefix string
	// Limit caps the keys returned, 1 to 1,000. Zero means 1,000.
	Limit int
	// Cursor continues a previous listing (KVListResult.Cursor).
	Cursor string
}

// KVKey is one key of a listing.
type KVKey struct {
	// Name is the key.
	Name string
	// Expiration is when the key expires; zero when it does not.
	Expiration time.Time
	// Metadata is the key's metadata; nil when none.
	Metadata []byte
}

// KVListResult is one page of keys in lexicographic order.
type KVListResult struct {
	// Keys are the keys of this page.
	Keys []KVKey
	// ListComplete is true when no more keys follow.
	ListComplete bool
	// Cursor continues the listing when ListComplete is false.
	Cursor string
}

// List returns keys in lexicographic order, a page at a time.
func (ns *KVNamespace) List(o KVListOptions) (*KVListResult, error) {
	var e workerabi.Encoder
	e.Str(ns.name)
	e.Str(o.Prefix)
	e.U32(uint32(o.Limit))
	e.Str(o.Cursor)
	res, err := rawCall(workerabi.OpKVList, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	out := &KVListResult{ListComplete: d.U8() == 1, Cursor: d.Str()}
	n := int(d.U32())
	for i := 0; i < n && d.Err == nil; i++ {
		k := KVKey{Name: d.Str()}
		if exp := d.I64(); exp > 0 {
			k.Expiration = time.Unix(exp, 0)
		}
		if d.U8() == 1 {
			k.Metadata = cloneBytes(&d)
		} else {
			cloneBytes(&d)
		}
		out.Keys = append(out.Keys, k)
	}
	return out, d.Err
}
