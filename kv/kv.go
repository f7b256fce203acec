// Package kv implements KV namespaces for workers: string keys with byte values, optional
// metadata and expiration, and paginated listing in key order, with Cloudflare Workers KV's
// limits. Namespace is the storage interface; SQLiteStore is the embedded backend (one SQLite
// file per namespace, each write durable when it returns). A replicated backend implements
// the same interfaces.
package kv

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
)

// Limits, as Cloudflare Workers KV's.
const (
	// MaxKeyBytes bounds a key.
	MaxKeyBytes = 512
	// MaxValueBytes bounds a value (25 MiB).
	MaxValueBytes = 25 << 20
	// MaxMetadataBytes bounds a key's metadata.
	MaxMetadataBytes = 1024
	// MaxListLimit bounds the keys of one List page, and is the default.
	MaxListLimit = 1000
	// MinExpirationTTL is the shortest expiration accepted, relative or absolute.
	MinExpirationTTL = 60 * time.Second
)

// ErrInvalid is wrapped by errors about arguments that break the limits.
var ErrInvalid = errors.New("invalid argument")

// Entry is a stored value.
type Entry struct {
	// Value is the value.
	Value []byte
	// Metadata is the metadata stored with the value; nil when none was.
	Metadata []byte
	// Expiration is when the key expires; zero when it does not.
	Expiration time.Time
}

// PutOptions are the optional parts of a put.
type PutOptions struct {
	// Metadata is stored with the value. Nil means none.
	Metadata []byte
	// Expiration is when the key expires, at least MinExpirationTTL ahead. Zero means never,
	// unless ExpirationTTL is set.
	Expiration time.Time
	// ExpirationTTL is the key's time to live, at least MinExpirationTTL; it wins over
	// Expiration. Zero means none.
	ExpirationTTL time.Duration
}

// ListOptions select the keys of a List page.
type ListOptions struct {
	// Prefix restricts keys to those starting with it.
	Prefix string
	// Limit caps the keys returned, 1 to MaxListLimit. Zero means MaxListLimit.
	Limit int
	// Cursor continues a listing from the Cursor of its previous page.
	Cursor string
}

// Key is one listed key.
type Key struct {
	// Name is the key.
	Name string
	// Expiration is when the key expires; zero when it does not.
	Expiration time.Time
	// Metadata is the key's metadata; nil when none.
	Metadata []byte
}

// ListResult is one page of keys, in byte order of the keys.
type ListResult struct {
	// Keys are this page's keys.
	Keys []Key
	// ListComplete is true when no keys follow.
	ListComplete bool
	// Cursor continues the listing when ListComplete is false.
	Cursor string
}

// Namespace is one KV namespace. Methods are safe for concurrent use. Expired keys are
// never returned.
type Namespace interface {
	// Get returns the entry of key, or nil (and no error) when it is absent or expired.
	Get(ctx context.Context, key string) (*Entry, error)
	// Put stores value under key; it is durable when Put returns. Put keeps no reference
	// to value or to o.Metadata once it returns.
	Put(ctx context.Context, key string, value []byte, o PutOptions) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns a page of keys.
	List(ctx context.Context, o ListOptions) (*ListResult, error)
}

// Store opens namespaces by name.
type Store interface {
	// Namespace returns the namespace name, creating it when it does not exist.
	Namespace(ctx context.Context, name string) (Namespace, error)
	// Close releases every namespace.
	Close() error
}

// CheckKey validates a key.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("kv: empty key: %w", ErrInvalid)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("kv: key of %d bytes exceeds %d: %w", len(key), MaxKeyBytes, ErrInvalid)
	case key == "." || key == "..":
		return fmt.Errorf("kv: key %q is not allowed: %w", key, ErrInvalid)
	}
	return nil
}

// CheckPut validates a put and returns the absolute expiration it asks for (zero for none).
func CheckPut(key string, value []byte, o PutOptions, now time.Time) (time.Time, error) {
	if err := CheckKey(key); err != nil {
		return time.Time{}, err
	}
	if len(value) > MaxValueBytes {
		return time.Time{}, fmt.Errorf("kv: value of %d bytes exceeds %d: %w", len(value), MaxValueBytes, ErrInvalid)
	}
	if len(o.Metadata) > MaxMetadataBytes {
		return time.Time{}, fmt.Errorf("kv: metadata of %d bytes exceeds %d: %w", len(o.Metadata), MaxMetadataBytes, ErrInvalid)
	}
	switch {
	case o.ExpirationTTL != 0:
		if o.ExpirationTTL < MinExpirationTTL {
			return time.Time{}, fmt.Errorf("kv: expiration TTL %v is below %v: %w", o.ExpirationTTL, MinExpirationTTL, ErrInvalid)
		}
		return now.Add(o.ExpirationTTL).Truncate(time.Second), nil
	case !o.Expiration.IsZero():
		if o.Expiration.Before(now.Add(MinExpirationTTL)) {
			return time.Time{}, fmt.Errorf("kv: expiration %v is less than %v ahead: %w", o.Expiration.UTC(), MinExpirationTTL, ErrInvalid)
		}
		return o.Expiration.Truncate(time.Second), nil
	}
	return time.Time{}, nil
}

// CheckList validates list options and returns the effective limit.
func CheckList(o ListOptions) (int, error) {
	switch {
	case o.Limit == 0:
		return MaxListLimit, nil
	case o.Limit < 0 || o.Limit > MaxListLimit:
		return 0, fmt.Errorf("kv: list limit %d out of range 1..%d: %w", o.Limit, MaxListLimit, ErrInvalid)
	}
	return o.Limit, nil
}

// cursorVersion is the first byte of a decoded cursor.
const cursorVersion = 1

// EncodeCursor returns the opaque cursor continuing a listing after key: the key with a
// version byte and a checksum, URL-safe base64 without padding.
func EncodeCursor(key string) string {
	b := make([]byte, 0, 1+len(key)+4)
	b = append(b, cursorVersion)
	b = append(b, key...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor returns the key a cursor made by EncodeCursor continues after. A cursor that
// was not made by EncodeCursor (bad encoding, version or checksum), or for a listing with a
// different prefix, is an error wrapping ErrInvalid: listing on from it would silently return
// the wrong keys, or none.
func DecodeCursor(cursor, prefix string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 5 || b[0] != cursorVersion {
		return "", fmt.Errorf("kv: invalid cursor %.64q: %w", cursor, ErrInvalid)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != sum {
		return "", fmt.Errorf("kv: invalid cursor %.64q: %w", cursor, ErrInvalid)
	}
	key := string(body[1:])
	if !strings.HasPrefix(key, prefix) {
		return "", fmt.Errorf("kv: cursor %.64q does not belong to a listing of prefix %q: %w", cursor, prefix, ErrInvalid)
	}
	return key, nil
}
