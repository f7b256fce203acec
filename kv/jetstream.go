package kv

import (
	"context"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
)

// JetStream store defaults and limits.
const (
	// DefaultCacheTTL bounds how stale a node's cached KV entry may be served while its
	// bucket watch is down.
	DefaultCacheTTL = 60 * time.Second
	// DefaultCacheSize bounds the bytes of values a node caches (all namespaces together).
	DefaultCacheSize = 64 << 20
	// JetStreamWriteTimeout bounds a Put or Delete waiting for JetStream's acknowledgement,
	// plus 200 ms per MiB of the value.
	JetStreamWriteTimeout = 5 * time.Second
	// JetStreamReadTimeout bounds a read from JetStream (a cache miss or a refresh).
	JetStreamReadTimeout = 3 * time.Second
	// JetStreamListTimeout bounds a listing read from JetStream.
	JetStreamListTimeout = 10 * time.Second
	// deleteMarkerTTL is how long JetStream keeps the markers of deleted and expired keys:
	// enough for every watch that resumes by sequence, short enough that churn of
	// short-lived keys does not accumulate.
	deleteMarkerTTL = 15 * time.Minute
	// readBackoff is how long reads answer from the cache alone (misses fail at once)
	// after a read from JetStream failed.
	readBackoff = time.Second
)

// Bucket naming: every namespace is one JetStream KV bucket. Bucket names allow only
// [A-Za-z0-9_-]; namespace names also allow '.'. A name without '.' is the bucket
// "verge_kv_<name>"; a name with '.' is "verge_kv-<base32 of the name>": the two prefixes
// differ, so the mapping is one-to-one and reversible.
const (
	bucketPrefix        = "verge_kv_"
	bucketPrefixEncoded = "verge_kv-"
	// Header names of the metadata (base64) and the absolute expiration (Unix seconds).
	hdrMeta = "Verge-Kv-Meta"
	hdrExp  = "Verge-Kv-Exp"
	// JetStream KV's own operation header and the server's marker header.
	hdrKVOp   = "KV-Operation"
	hdrMarker = "Nats-Marker-Reason"
)

var bucketB32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// BucketName returns the JetStream KV bucket of namespace name.
func BucketName(name string) string {
	if !strings.Contains(name, ".") {
		return bucketPrefix + name
	}
	return bucketPrefixEncoded + bucketB32.EncodeToString([]byte(name))
}

// NamespaceOfBucket returns the namespace a bucket holds, and false for a bucket that is
// not a KV namespace's.
func NamespaceOfBucket(bucket string) (string, bool) {
	if n, ok := strings.CutPrefix(bucket, bucketPrefix); ok {
		return n, validName.MatchString(n)
	}
	if e, ok := strings.CutPrefix(bucket, bucketPrefixEncoded); ok {
		b, err := bucketB32.DecodeString(e)
		n := string(b)
		return n, err == nil && strings.Contains(n, ".") && validName.MatchString(n)
	}
	return "", false
}

// encodeKey maps a key (any bytes, up to MaxKeyBytes) to a JetStream KV key.
func encodeKey(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func decodeKey(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err == nil
}

// JetStreamOptions configure a JetStreamStore.
type JetStreamOptions struct {
	// CacheTTL bounds the staleness of a cached entry while the bucket watch is down: an
	// older entry is read from JetStream again (and served anyway when JetStream cannot be
	// reached). Zero means DefaultCacheTTL.
	CacheTTL time.Duration
	// CacheSize bounds the bytes of values cached, all namespaces together; keys, metadata
	// and expirations are indexed in full. Zero means DefaultCacheSize.
	CacheSize int64
	// Replicas is the replica count of new buckets; zero means 1.
	Replicas int
	// Direct turns the cache off: no watch, every read goes to JetStream. For tools.
	Direct bool
	// Logger receives watch failures and recoveries.
	Logger *slog.Logger
}

// JetStreamStore keeps KV namespaces in NATS JetStream KV buckets, one per namespace,
// replicated by JetStream. Writes return once JetStream acknowledged them (stored on a
// quorum of replicas). Reads answer from this node's cache, which a watch on each bucket
// keeps up to date (docs/cluster.md).
type JetStreamStore struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	o     JetStreamOptions
	log   *slog.Logger
	cache *valueCache
	now   func() time.Time

	mu     sync.Mutex
	ns     map[string]*jsNS
	closed bool

	// onApply and onHealth, set before the first namespace opens (tests and benchmarks),
	// observe the watches: each revision applied, and each change of a watch's health.
	onApply  func(ns, key string, seq uint64)
	onHealth func(ns string, healthy bool)

	status chan nats.Status
	stop   chan struct{}
	done   sync.WaitGroup
}

var _ Store = (*JetStreamStore)(nil)

// NewJetStreamStore returns a store over the cluster node's connection; its buckets have
// node.Replicas() replicas. It needs no reachable cluster: namespaces open at once and
// their buckets are created when JetStream answers.
func NewJetStreamStore(node *cluster.Node, o JetStreamOptions) *JetStreamStore {
	o.Replicas = node.Replicas()
	return NewJetStreamStoreConn(node.Conn(), node.JetStream(), o)
}

// NewJetStreamStoreConn returns a store over a NATS connection, as a client that is not a
// cluster node (the verge kv command) uses.
func NewJetStreamStoreConn(nc *nats.Conn, js jetstream.JetStream, o JetStreamOptions) *JetStreamStore {
	if o.CacheTTL <= 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &JetStreamStore{nc: nc, js: js, o: o, log: log, cache: newValueCache(o.CacheSize), now: time.Now,
		ns: map[string]*jsNS{}, stop: make(chan struct{})}
	if !o.Direct {
		s.status = nc.StatusChanged()
		s.done.Add(1)
		go s.statusLoop()
	}
	return s
}

// statusLoop tells the namespaces when the connection drops (their watches stop being
// current) and when it is back (they start again from a fresh snapshot).
func (s *JetStreamStore) statusLoop() {
	defer s.done.Done()
	for {
		select {
		case <-s.stop:
			return
		case _, ok := <-s.status:
			if !ok {
				return
			}
			up := s.nc.IsConnected()
			s.mu.Lock()
			list := make([]*jsNS, 0, len(s.ns))
			for _, n := range s.ns {
				list = append(list, n)
			}
			s.mu.Unlock()
			for _, n := range list {
				if up {
					n.kick()
				} else {
					n.setUnhealthy(errors.New("disconnected from NATS"))
					n.kick()
				}
			}
		}
	}
}

// Namespace returns the namespace name. It does not wait for the cluster: the bucket is
// created, and the watch started, in the background; until then reads and writes go to
// JetStream directly (and fail with cluster.ErrUnavailable when it cannot be reached).
func (s *JetStreamStore) Namespace(ctx context.Context, name string) (Namespace, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("kv: invalid namespace name %q: %w", name, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("kv: store closed")
	}
	if n := s.ns[name]; n != nil {
		return n, nil
	}
	n := newJSNS(s, name)
	s.ns[name] = n
	if !s.o.Direct {
		s.done.Add(1)
		go n.watchLoop()
	}
	return n, nil
}

// OpenExisting returns the namespace name when its bucket exists, ErrNamespaceNotFound
// when it does not; it creates nothing.
func (s *JetStreamStore) OpenExisting(ctx context.Context, name string) (Namespace, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("kv: invalid namespace name %q: %w", name, ErrInvalid)
	}
	c, cancel := context.WithTimeout(ctx, JetStreamReadTimeout)
	defer cancel()
	_, err := s.js.KeyValue(c, BucketName(name))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("kv: %w: %s (bucket %s)", ErrNamespaceNotFound, name, BucketName(name))
	}
	if err != nil {
		return nil, jsError(ctx, "open "+name, err)
	}
	return s.Namespace(ctx, name)
}

// Names lists the namespaces that have a bucket, sorted.
func (s *JetStreamStore) Names(ctx context.Context) ([]string, error) {
	c, cancel := context.WithTimeout(ctx, JetStreamListTimeout)
	defer cancel()
	l := s.js.KeyValueStoreNames(c)
	var names []string
	for b := range l.Name() {
		if n, ok := NamespaceOfBucket(strings.TrimPrefix(b, "KV_")); ok {
			names = append(names, n)
		}
	}
	if err := l.Error(); err != nil {
		return nil, jsError(ctx, "list namespaces", err)
	}
	sort.Strings(names)
	return names, nil
}

// Close stops every watch and drops the cache. The connection stays open: it is the
// caller's.
func (s *JetStreamStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.done.Wait()
	if s.status != nil {
		s.nc.RemoveStatusListener(s.status)
	}
	return nil
}

// jsError classifies an error of a JetStream call: when the caller's context ended it says
// so; a value larger than the NATS server accepts is an invalid argument; anything else
// means the cluster did not serve the request, and wraps cluster.ErrUnavailable.
func jsError(ctx context.Context, op string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("kv: %s: %w", op, ctx.Err())
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("kv: %s: the value is larger than the NATS server's max_payload: %w (%w)", op, ErrInvalid, err)
	case strings.Contains(err.Error(), "no suitable peers"):
		// JetStream places a bucket's replicas on distinct servers: a new cluster needs as
		// many servers running as it has replicas before its first bucket can exist.
		return fmt.Errorf("kv: %s: fewer JetStream servers are up than the bucket's replicas (cluster.replicas): start the other nodes: %w: %w", op, cluster.ErrUnavailable, err)
	}
	return fmt.Errorf("kv: %s: JetStream did not answer: %w: %w", op, cluster.ErrUnavailable, err)
}
