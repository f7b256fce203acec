package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// KV storage settings.
const (
	// KVBucket is the JetStream key-value bucket of the cluster's ACME state.
	KVBucket = "verge_acme"
	// kvMaxValue bounds one stored value (a certificate chain is a few KiB).
	kvMaxValue = 1 << 20
	// LockTTL is how long a lock whose holder stopped refreshing it (a crashed node) keeps
	// others out; a holder refreshes its locks every LockTTL/3.
	LockTTL = 30 * time.Second
	// lockPoll is how often a waiting Lock tries again.
	lockPoll = 500 * time.Millisecond
	// kvTimeout bounds one JetStream call when the caller's context has no deadline.
	kvTimeout = 10 * time.Second
)

// KVStorage is a certmagic.Storage on a JetStream key-value bucket: every node of a cluster
// sees the certificates, keys and ACME accounts the others stored, and its locks exclude
// across nodes, so one node orders a name while the others wait and then load the result.
// Keys are certmagic's slash-separated paths, each segment escaped (bytes outside
// [A-Za-z0-9_-] as "=XX") and joined with '.', JetStream's token separator, so a directory
// is listed with a subject filter.
type KVStorage struct {
	js       jetstream.JetStream
	replicas int
	owner    string // this storage's lock-holder identity

	mu    sync.Mutex
	kv    jetstream.KeyValue // nil until opened
	held  map[string]*heldLock
	close chan struct{}

	// Tests: the lease (0: LockTTL), a fault injected before each refresh, and events.
	ttl                            time.Duration
	refreshFault                   func() error
	onRefresh, onLost, onLocalWait func()
}

// heldLock is one Lock's hold on a name.
type heldLock struct {
	token    string // this Lock's own, written with the storage's identity
	rev      uint64 // the revision this holder wrote last
	lost     bool   // the lease ran out without a refresh
	stop     chan struct{}
	done     chan struct{} // the refresher ended
	released chan struct{} // Unlock finished: the next caller here may take the name
}

func (h *heldLock) owner(s *KVStorage) string { return s.owner + "/" + h.token }

// lockValue is what a lock key holds: who holds it (node identity and the Lock's token).
// Its expiry is not in it: waiters time the lease themselves from the key's revision.
type lockValue struct {
	Owner string `json:"owner"`
}

var _ certmagic.Storage = (*KVStorage)(nil)

// NewKVStorage returns the storage on js's bucket KVBucket, created with the given replicas
// at first use (so a cluster still forming delays the first certificate, not the start).
func NewKVStorage(js jetstream.JetStream, replicas int) *KVStorage {
	return &KVStorage{js: js, replicas: max(replicas, 1), owner: nuid.Next(), held: map[string]*heldLock{}, close: make(chan struct{})}
}

// bucket opens the bucket, creating it when missing.
func (s *KVStorage) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	kv := s.kv
	s.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := try(ctx, func() (jetstream.KeyValue, error) {
		kv, err := s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       KVBucket,
			Description:  "Verge ACME certificates, keys, accounts and locks",
			History:      1,
			MaxValueSize: kvMaxValue,
			Replicas:     s.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = s.js.KeyValue(ctx, KVBucket)
		}
		return kv, err
	})
	if err != nil {
		return nil, fmt.Errorf("acme storage: bucket %s: %w", KVBucket, err)
	}
	s.mu.Lock()
	s.kv = kv
	s.mu.Unlock()
	return kv, nil
}

// encodeKey maps a certmagic key to a JetStream key.
func encodeKey(key string) string {
	var b strings.Builder
	for _, seg := range strings.Split(key, "/") {
		if seg == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "=%02X", c)
			}
		}
	}
	return b.String()
}

// decodeKey is the inverse of encodeKey.
func decodeKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c == '.':
			b.WriteByte('/')
		case c == '=' && i+2 < len(k):
			v, _ := strconv.ParseUint(k[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, kvTimeout)
}

func notExist(key string) error { return fmt.Errorf("%s: %w", key, fs.ErrNotExist) }

// Store saves value at key.
func (s *KVStorage) Store(ctx context.Context, key string, value []byte) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	_, err = try(ctx, func() (uint64, error) { return kv.Put(ctx, "d."+encodeKey(key), value) })
	return err
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *KVStorage) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := try(ctx, func() (jetstream.KeyValueEntry, error) { return kv.Get(ctx, "d."+encodeKey(key)) })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, notExist(key)
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// keysUnder returns the stored keys (certmagic form) under the directory prefix.
func (s *KVStorage) keysUnder(ctx context.Context, prefix string) ([]string, error) {
	filter := "d.>"
	if p := encodeKey(prefix); p != "" {
		filter = "d." + p + ".>"
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	l, err := try(ctx, func() (jetstream.KeyLister, error) { return kv.ListKeysFiltered(ctx, filter) })
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, decodeKey(strings.TrimPrefix(k, "d.")))
	}
	return keys, ctx.Err()
}

// Delete deletes key, and every key under it when it is a directory.
func (s *KVStorage) Delete(ctx context.Context, key string) error {
	under, err := s.keysUnder(ctx, key)
	if err != nil {
		return err
	}
	found := false
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := s.bucket(cctx)
	if err != nil {
		return err
	}
	if _, err := try(cctx, func() (jetstream.KeyValueEntry, error) { return kv.Get(cctx, "d."+encodeKey(key)) }); err == nil {
		found = true
		if err := tryDo(cctx, func() error { return kv.Delete(cctx, "d."+encodeKey(key)) }); err != nil {
			return err
		}
	}
	for _, k := range under {
		found = true
		if err := tryDo(cctx, func() error { return kv.Delete(cctx, "d."+encodeKey(k)) }); err != nil {
			return err
		}
	}
	if !found {
		return notExist(key)
	}
	return nil
}

// Exists reports whether key is stored or is a directory of stored keys.
func (s *KVStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List returns the keys under path: all of them when recursive, else its direct entries.
func (s *KVStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	keys, err := s.keysUnder(ctx, path)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, notExist(path)
	}
	if recursive {
		return keys, nil
	}
	base := strings.Trim(path, "/")
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		rest := strings.TrimPrefix(strings.TrimPrefix(k, base), "/")
		first, _, _ := strings.Cut(rest, "/")
		entry := first
		if base != "" {
			entry = base + "/" + first
		}
		if !seen[entry] {
			seen[entry] = true
			out = append(out, entry)
		}
	}
	return out, nil
}

// Stat describes key: a stored value, or a directory of stored keys.
func (s *KVStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	cctx, cancel := withTimeout(ctx)
	kv, err := s.bucket(cctx)
	if err != nil {
		cancel()
		return certmagic.KeyInfo{}, err
	}
	e, err := try(cctx, func() (jetstream.KeyValueEntry, error) { return kv.Get(cctx, "d."+encodeKey(key)) })
	cancel()
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: e.Created(), Size: int64(len(e.Value())), IsTerminal: true}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return certmagic.KeyInfo{}, err
	}
	under, err := s.keysUnder(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, notExist(key)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

func lockKey(name string) string { return "l." + encodeKey(name) }

// Lock takes the cluster-wide lock name, waiting while another holder has it (polling every
// half second until ctx ends), or while this storage already holds it for another caller.
// A lock whose holder stopped refreshing it is taken over once its revision in the bucket has
// stayed the same for the lease (LockTTL) as measured here: the only clocks compared are
// this process's monotonic clock with itself, so clock skew between nodes can't shorten a
// lease.
func (s *KVStorage) Lock(ctx context.Context, name string) error {
	key := lockKey(name)
	var seen lockSeen
	for {
		// One holder per name in this process: a second caller waits for the first's Unlock,
		// so Unlock(name) always means the one holder (certmagic's interface has no token).
		s.mu.Lock()
		prev := s.held[name]
		s.mu.Unlock()
		if prev != nil {
			if s.onLocalWait != nil {
				s.onLocalWait()
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("acme storage: waiting for lock %s: %w", name, ctx.Err())
			case <-prev.released:
			}
			continue
		}
		h := &heldLock{token: nuid.Next(), stop: make(chan struct{}), done: make(chan struct{}), released: make(chan struct{})}
		rev, err := s.tryLock(ctx, key, h.owner(s), &seen)
		if err != nil {
			return err
		}
		if rev != 0 {
			s.mu.Lock()
			if s.held[name] != nil { // another caller here took the name meanwhile: give ours back
				kv := s.kv
				s.mu.Unlock()
				dctx, cancel := withTimeout(ctx)
				kv.Delete(dctx, key, jetstream.LastRevision(rev))
				cancel()
				continue
			}
			h.rev = rev
			s.held[name] = h
			s.mu.Unlock()
			go s.refreshLock(key, h)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("acme storage: waiting for lock %s: %w", name, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// lockSeen is what a waiting Lock observed of the lock key: its revision and since when (by
// the monotonic clock).
type lockSeen struct {
	rev   uint64
	since time.Time
}

// tryLock creates the lock key, or replaces one whose revision has not changed for the lease;
// 0 means someone holds it.
func (s *KVStorage) tryLock(ctx context.Context, key, owner string, seen *lockSeen) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return 0, err
	}
	val, _ := json.Marshal(lockValue{Owner: owner})
	rev, err := try(ctx, func() (uint64, error) { return kv.Create(ctx, key, val) })
	if err == nil {
		return rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("acme storage: lock: %w", err)
	}
	e, err := try(ctx, func() (jetstream.KeyValueEntry, error) { return kv.Get(ctx, key) })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil // released meanwhile: try again at once on the next round
	}
	if err != nil {
		return 0, fmt.Errorf("acme storage: lock: %w", err)
	}
	now := time.Now()
	if e.Revision() != seen.rev {
		// A new holder or a refresh: its lease runs from now, when this waiter first saw it
		// (later than the holder's write began, so never shorter than the holder counts it).
		*seen = lockSeen{rev: e.Revision(), since: now}
		return 0, nil
	}
	if now.Sub(seen.since) < s.lockTTL() {
		return 0, nil
	}
	// Stale: take it over, unless someone else did first (the revision check).
	rev, err = try(ctx, func() (uint64, error) { return kv.Update(ctx, key, val, e.Revision()) })
	if err != nil {
		return 0, nil
	}
	return rev, nil
}

func (s *KVStorage) lockTTL() time.Duration {
	if s.ttl > 0 {
		return s.ttl
	}
	return LockTTL
}

// refreshLock rewrites a held lock every third of the lease, so its revision changes and no
// waiter finds it stale, until it is released. A failed refresh is retried (every tenth of
// the lease) until the lease has really run out: the lease is counted from the start of the
// last write that succeeded, which is before any waiter can have seen that revision, so this
// holder gives the lock up no later than a waiter may take it. A lock rewritten by someone
// else (its token gone) is lost at once.
func (s *KVStorage) refreshLock(key string, h *heldLock) {
	defer close(h.done)
	ttl := s.lockTTL()
	leaseStart := time.Now()
	next := ttl / 3
	val, _ := json.Marshal(lockValue{Owner: h.owner(s)})
	for {
		t := time.NewTimer(next)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-s.close:
			t.Stop()
			return
		case <-t.C:
		}
		start := time.Now()
		left := leaseStart.Add(ttl).Sub(start)
		if left <= 0 {
			s.loseLock(h)
			return
		}
		s.mu.Lock()
		kv, cur, fault := s.kv, h.rev, s.refreshFault
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), min(kvTimeout, left))
		var rev uint64
		err := error(nil)
		if fault != nil {
			err = fault()
		}
		if err == nil {
			rev, err = try(ctx, func() (uint64, error) { return kv.Update(ctx, key, val, cur) })
		}
		if err != nil && ctx.Err() == nil {
			// Lost for good when the key no longer holds this lock's token; written after all
			// when the update's answer was lost but the key holds the token at a new revision.
			e, gerr := kv.Get(ctx, key)
			var v lockValue
			switch {
			case errors.Is(gerr, jetstream.ErrKeyNotFound):
				cancel()
				s.loseLock(h)
				return
			case gerr != nil || e.Revision() == cur:
			case json.Unmarshal(e.Value(), &v) == nil && v.Owner == h.owner(s):
				rev, err = e.Revision(), nil
			default:
				cancel()
				s.loseLock(h)
				return
			}
		}
		cancel()
		if err != nil {
			next = ttl / 10
			continue
		}
		s.mu.Lock()
		h.rev = rev
		s.mu.Unlock()
		leaseStart, next = start, ttl/3
		if s.onRefresh != nil {
			s.onRefresh()
		}
	}
}

// loseLock marks h as no longer held in the bucket (its lease ran out).
func (s *KVStorage) loseLock(h *heldLock) {
	s.mu.Lock()
	h.lost = true
	s.mu.Unlock()
	if s.onLost != nil {
		s.onLost()
	}
}

// Unlock releases the lock name taken by Lock: it deletes the lock key only at the revision
// this holder wrote last, so a lock someone took over after this holder's lease ran out stays.
func (s *KVStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("acme storage: lock %s is not held", name)
	}
	defer func() {
		s.mu.Lock()
		if s.held[name] == h {
			delete(s.held, name)
		}
		s.mu.Unlock()
		close(h.released)
	}()
	close(h.stop)
	<-h.done
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	s.mu.Lock()
	rev, lost := h.rev, h.lost
	s.mu.Unlock()
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	err = tryDo(ctx, func() error { return kv.Delete(ctx, lockKey(name), jetstream.LastRevision(rev)) })
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		if lost {
			return nil // someone took it over after the lease ran out: theirs now
		}
		return fmt.Errorf("acme storage: unlock %s: %w", name, err)
	}
	return nil
}

// Close stops refreshing the held locks (they expire after LockTTL).
func (s *KVStorage) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.close:
	default:
		close(s.close)
	}
}

// String names the storage in certmagic's logs.
func (s *KVStorage) String() string { return "jetstream-kv:" + KVBucket }

// try runs op again while it fails because the cluster is still electing the bucket's leader
// (no responders), with backoff up to 1s, until ctx ends.
func try[T any](ctx context.Context, op func() (T, error)) (T, error) {
	delay := 20 * time.Millisecond
	for {
		v, err := op()
		if err == nil || !transient(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

func tryDo(ctx context.Context, op func() error) error {
	_, err := try(ctx, func() (struct{}, error) { return struct{}{}, op() })
	return err
}

// transient reports errors of a JetStream that is starting or electing a leader.
func transient(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat)
}
