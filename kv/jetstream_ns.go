package kv

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/verge-edge/verge/cluster"
)

// jsNS is one namespace of a JetStreamStore: its bucket, and this node's index of the
// bucket's keys with a cache of their values.
type jsNS struct {
	s       *JetStreamStore
	name    string
	bucket  string
	stream  string // the bucket's stream, KV_<bucket>
	subject string // "$KV.<bucket>." before an encoded key

	ensureMu sync.Mutex
	strm     atomic.Pointer[jetstream.Stream] // set once the bucket exists

	mu       sync.RWMutex
	idx      map[string]*jsEntry // the index readers use
	complete bool                // idx holds every key of the bucket (from a finished snapshot)
	sorted   []string            // idx's keys in byte order; nil when stale
	watchSeq uint64              // the highest sequence the watch applied to idx
	next     *snapshot           // the snapshot being loaded; nil when none
	active   *snapshot           // the running watch's snapshot; nil when none

	healthy     atomic.Bool  // the watch is current: snapshot loaded, no failure since
	lastHealthy atomic.Int64 // UnixNano when the watch was last known current
	failUntil   atomic.Int64 // UnixNano until which reads do not try JetStream
	kickc       chan struct{}
}

// snapshot is an index being loaded by a new watch.
type snapshot struct {
	idx   map[string]*jsEntry
	seq   uint64        // the highest sequence delivered
	floor uint64        // the stream leader's last sequence when the snapshot started
	below chan struct{} // signalled when nothing is pending but seq is below floor
}

func newJSNS(s *JetStreamStore, name string) *jsNS {
	b := BucketName(name)
	return &jsNS{s: s, name: name, bucket: b, stream: "KV_" + b, subject: "$KV." + b + ".",
		idx: map[string]*jsEntry{}, kickc: make(chan struct{}, 1)}
}

// ensure returns the bucket's stream, creating the bucket when it does not exist.
func (n *jsNS) ensure(ctx context.Context) (jetstream.Stream, error) {
	if p := n.strm.Load(); p != nil {
		return *p, nil
	}
	n.ensureMu.Lock()
	defer n.ensureMu.Unlock()
	if p := n.strm.Load(); p != nil {
		return *p, nil
	}
	js := n.s.js
	_, err := js.KeyValue(ctx, n.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         n.bucket,
			Description:    "Verge KV namespace " + n.name,
			History:        1,
			MaxValueSize:   MaxValueBytes + 16<<10, // the value and its headers
			Replicas:       n.s.o.Replicas,
			LimitMarkerTTL: deleteMarkerTTL,
			Metadata:       map[string]string{"verge_namespace": n.name},
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			_, err = js.KeyValue(ctx, n.bucket)
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, n.stream)
	if err != nil {
		return nil, err
	}
	n.strm.Store(&st)
	return st, nil
}

// forget drops the stream handle after a failure, so that the next call checks the bucket
// again (an operator may have deleted it).
func (n *jsNS) forget() { n.strm.Store(nil) }

// fresh reports whether idx reflects the bucket: the watch is current, or was less than
// the cache TTL ago.
func (n *jsNS) fresh(now time.Time) bool {
	if n.healthy.Load() {
		return true
	}
	return now.UnixNano()-n.lastHealthy.Load() < int64(n.s.o.CacheTTL)
}

func (n *jsNS) setUnhealthy(err error) {
	if n.healthy.Swap(false) {
		n.lastHealthy.Store(n.s.now().UnixNano())
		if f := n.s.onHealth; f != nil {
			f(n.name, false)
		}
		n.s.log.Warn("kv: watch of the namespace's bucket stopped; reads answer from this node's cache for up to kv_cache_ttl", "namespace", n.name, "err", err)
	}
}

func (n *jsNS) Get(ctx context.Context, key string) (*Entry, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if !n.s.o.Direct {
		n.mu.RLock()
		e, complete := n.idx[key], n.complete
		n.mu.RUnlock()
		if n.healthy.Load() {
			switch {
			case e == nil && complete, e != nil && e.deleted:
				return nil, nil
			case e != nil:
				if v := e.value(); v != nil {
					return e.entry(v, n.s.now), nil
				}
			}
			return n.getJS(ctx, key, nil, nil)
		}
		now := n.s.now()
		if e != nil {
			if v := e.value(); v != nil || e.deleted {
				if n.fresh(now) || now.UnixNano()-e.loaded.Load() < int64(n.s.o.CacheTTL) {
					return e.entry(v, n.s.now), nil
				}
				// Older than the cache TTL: ask JetStream, and serve this if it cannot answer.
				return n.getJS(ctx, key, e, v)
			}
		} else if complete && n.fresh(now) {
			return nil, nil
		}
	}
	return n.getJS(ctx, key, nil, nil)
}

// entry returns a copy of e as an Entry, or nil when it expired.
func (e *jsEntry) entry(v []byte, now func() time.Time) *Entry {
	if e.deleted || e.exp != 0 && e.exp <= now().Unix() {
		return nil
	}
	out := &Entry{Value: append([]byte{}, v...)}
	if e.meta != nil {
		out.Metadata = append([]byte{}, e.meta...)
	}
	if e.exp != 0 {
		out.Expiration = time.Unix(e.exp, 0)
	}
	return out
}

// getJS reads key from JetStream. When JetStream cannot answer and stale is set, stale
// (with its value staleV) is served.
func (n *jsNS) getJS(ctx context.Context, key string, stale *jsEntry, staleV []byte) (*Entry, error) {
	serveStale := func(err error) (*Entry, error) {
		if stale != nil {
			n.s.log.Debug("kv: JetStream unreachable; serving a cached entry older than kv_cache_ttl", "namespace", n.name, "err", err)
			return stale.entry(staleV, n.s.now), nil
		}
		return nil, err
	}
	now := n.s.now()
	if until := n.failUntil.Load(); now.UnixNano() < until {
		return serveStale(fmt.Errorf("kv: get from %s: not in this node's cache, and JetStream did not answer %v ago: %w",
			n.name, now.Sub(time.Unix(0, until-int64(readBackoff))).Round(time.Millisecond), cluster.ErrUnavailable))
	}
	c, cancel := context.WithTimeout(ctx, JetStreamReadTimeout)
	defer cancel()
	e, v, err := n.readJS(c, key)
	if err != nil {
		if ctx.Err() == nil {
			n.failUntil.Store(n.s.now().Add(readBackoff).UnixNano())
		}
		return serveStale(jsError(ctx, "get from "+n.name, err))
	}
	if e == nil {
		return nil, nil
	}
	if !n.s.o.Direct {
		e.loaded.Store(n.s.now().UnixNano())
		e, v = n.applyRead(key, e, v)
	}
	return e.entry(v, n.s.now), nil
}

// readJS reads the latest revision of key; nil (and no error) when there is none.
func (n *jsNS) readJS(ctx context.Context, key string) (*jsEntry, []byte, error) {
	st, err := n.ensure(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := st.GetLastMsgForSubject(ctx, n.subject+encodeKey(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			n.forget()
		}
		return nil, nil, err
	}
	e := parseEntry(m.Sequence, m.Header, len(m.Data))
	if e.deleted {
		return nil, nil, nil
	}
	return e, m.Data, nil
}

// parseEntry builds an entry from a message's headers.
func parseEntry(seq uint64, h nats.Header, size int) *jsEntry {
	e := &jsEntry{seq: seq, size: size}
	if len(h) == 0 {
		return e
	}
	if h.Get(hdrKVOp) != "" || h.Get(hdrMarker) != "" {
		e.deleted = true
		return e
	}
	if m, ok := h[hdrMeta]; ok && len(m) > 0 {
		if m[0] == "-" {
			e.meta = []byte{}
		} else if b, err := base64.StdEncoding.DecodeString(m[0]); err == nil {
			e.meta = b
		}
	}
	if x := h.Get(hdrExp); x != "" {
		e.exp, _ = strconv.ParseInt(x, 10, 64)
	}
	if s := h.Get("Nats-Msg-Size"); s != "" { // a headers-only delivery
		e.size, _ = strconv.Atoi(s)
	}
	return e
}

func (n *jsNS) Put(ctx context.Context, key string, value []byte, o PutOptions) error {
	now := n.s.now()
	exp, err := CheckPut(key, value, o, now)
	if err != nil {
		return err
	}
	m := nats.NewMsg(n.subject + encodeKey(key))
	m.Data = value
	var opts []jetstream.PublishOpt
	e := &jsEntry{meta: o.Metadata, size: len(value)}
	if o.Metadata != nil {
		e.meta = append([]byte{}, o.Metadata...)
		if len(o.Metadata) == 0 {
			m.Header.Set(hdrMeta, "-")
		} else {
			m.Header.Set(hdrMeta, base64.StdEncoding.EncodeToString(o.Metadata))
		}
	}
	if !exp.IsZero() {
		e.exp = exp.Unix()
		m.Header.Set(hdrExp, strconv.FormatInt(e.exp, 10))
		// JetStream removes the message at its TTL (whole seconds, rounded up); reads
		// also check the expiration, so it is never served late.
		ttl := exp.Sub(now)
		ttl = (ttl + time.Second - 1).Truncate(time.Second)
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	seq, err := n.publish(ctx, "put to", m, opts)
	if err != nil {
		return err
	}
	e.seq = seq
	if !n.s.o.Direct {
		// The cache keeps the value beyond this call: copy it, as the caller may reuse its
		// buffer (a worker's KV call passes a slice of the instance's memory).
		var v []byte
		if n.s.cache.fits(len(value)) {
			v = append(make([]byte, 0, len(value)), value...)
		}
		n.applyLocal(key, e, v)
	}
	return nil
}

func (n *jsNS) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	m := nats.NewMsg(n.subject + encodeKey(key))
	m.Header.Set(hdrKVOp, "DEL")
	seq, err := n.publish(ctx, "delete from", m, []jetstream.PublishOpt{jetstream.WithMsgTTL(deleteMarkerTTL)})
	if err != nil {
		return err
	}
	if !n.s.o.Direct {
		n.applyLocal(key, &jsEntry{seq: seq, deleted: true}, nil)
	}
	return nil
}

// writeTimeout bounds a write of size bytes: JetStreamWriteTimeout, and 200 ms more per MiB
// (a 25 MiB value is copied to every replica).
func writeTimeout(size int) time.Duration {
	return JetStreamWriteTimeout + time.Duration(size>>20)*200*time.Millisecond
}

// attemptTimeout bounds one publish attempt of size bytes.
func attemptTimeout(size int) time.Duration {
	return time.Second + time.Duration(size>>20)*200*time.Millisecond
}

// publish stores m in the bucket and returns its sequence once JetStream acknowledged it.
// It retries within its write timeout while the bucket's stream has no leader (a server
// was lost and the others are electing one); a message ID makes the retries idempotent,
// as JetStream stores a message once per ID within its duplicate window.
func (n *jsNS) publish(ctx context.Context, op string, m *nats.Msg, opts []jetstream.PublishOpt) (uint64, error) {
	c, cancel := context.WithTimeout(ctx, writeTimeout(len(m.Data)))
	defer cancel()
	opts = append(opts, jetstream.WithExpectStream(n.stream), jetstream.WithMsgID(nuid.Next()))
	wait := 50 * time.Millisecond
	for {
		_, err := n.ensure(c)
		if err == nil {
			// One attempt waits at most a second (more for big values): a stream leader that
			// died with the message never answers, and the new one is elected within about
			// 3 s (cluster/raft_timers.go), so the retry, not the first wait, succeeds.
			a, acancel := context.WithTimeout(c, attemptTimeout(len(m.Data)))
			var ack *jetstream.PubAck
			ack, err = n.s.js.PublishMsg(a, m, opts...)
			acancel()
			if err == nil {
				return ack.Sequence, nil
			}
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				n.forget()
			}
		}
		var apiErr *jetstream.APIError
		if errors.Is(err, nats.ErrMaxPayload) || errors.As(err, &apiErr) && apiErr.Code == 400 {
			return 0, jsError(ctx, op+" "+n.name, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-c.Done():
			t.Stop()
			return 0, jsError(ctx, op+" "+n.name, err)
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

func (n *jsNS) List(ctx context.Context, o ListOptions) (*ListResult, error) {
	limit, err := CheckList(o)
	if err != nil {
		return nil, err
	}
	after := ""
	if o.Cursor != "" {
		if after, err = DecodeCursor(o.Cursor, o.Prefix); err != nil {
			return nil, err
		}
	}
	if !n.s.o.Direct {
		n.mu.Lock()
		complete := n.complete
		if complete && n.fresh(n.s.now()) {
			res := n.listIndex(o.Prefix, after, o.Cursor != "", limit)
			n.mu.Unlock()
			return res, nil
		}
		n.mu.Unlock()
		res, err := n.listJS(ctx, o.Prefix, after, o.Cursor != "", limit)
		if err != nil && complete && errors.Is(err, cluster.ErrUnavailable) {
			n.s.log.Debug("kv: JetStream unreachable; listing from this node's cache", "namespace", n.name, "err", err)
			n.mu.Lock()
			res = n.listIndex(o.Prefix, after, o.Cursor != "", limit)
			n.mu.Unlock()
			return res, nil
		}
		return res, err
	}
	return n.listJS(ctx, o.Prefix, after, o.Cursor != "", limit)
}

// listIndex lists from idx; n.mu is held (for writing: it may sort the keys).
func (n *jsNS) listIndex(prefix, after string, hasCursor bool, limit int) *ListResult {
	if n.sorted == nil {
		n.sorted = make([]string, 0, len(n.idx))
		for k, e := range n.idx {
			if !e.deleted {
				n.sorted = append(n.sorted, k)
			}
		}
		sort.Strings(n.sorted)
	}
	now := n.s.now().Unix()
	start := sort.SearchStrings(n.sorted, prefix)
	if hasCursor {
		start = sort.Search(len(n.sorted), func(i int) bool { return n.sorted[i] > after })
	}
	res := &ListResult{Keys: []Key{}}
	for _, k := range n.sorted[start:] {
		if !strings.HasPrefix(k, prefix) {
			break
		}
		e := n.idx[k]
		if e == nil || e.deleted || e.exp != 0 && e.exp <= now {
			continue
		}
		if len(res.Keys) == limit {
			res.Cursor = EncodeCursor(res.Keys[limit-1].Name)
			return res
		}
		res.Keys = append(res.Keys, e.key(k))
	}
	res.ListComplete = true
	return res
}

func (e *jsEntry) key(name string) Key {
	k := Key{Name: name}
	if e.meta != nil {
		k.Metadata = append([]byte{}, e.meta...)
	}
	if e.exp != 0 {
		k.Expiration = time.Unix(e.exp, 0)
	}
	return k
}

// listJS lists from JetStream: the headers of the latest revision of every key, read by
// an ordered consumer.
func (n *jsNS) listJS(ctx context.Context, prefix, after string, hasCursor bool, limit int) (*ListResult, error) {
	c, cancel := context.WithTimeout(ctx, JetStreamListTimeout)
	defer cancel()
	all, err := n.scan(c)
	if err != nil {
		return nil, jsError(ctx, "list "+n.name, err)
	}
	names := make([]string, 0, len(all))
	for k, e := range all {
		if !e.deleted && strings.HasPrefix(k, prefix) && (!hasCursor || k > after) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	now := n.s.now().Unix()
	res := &ListResult{Keys: []Key{}}
	for _, k := range names {
		e := all[k]
		if e.exp != 0 && e.exp <= now {
			continue
		}
		if len(res.Keys) == limit {
			res.Cursor = EncodeCursor(res.Keys[limit-1].Name)
			return res, nil
		}
		res.Keys = append(res.Keys, e.key(k))
	}
	res.ListComplete = true
	return res, nil
}

// errScanStalled: a listing's consumer delivered nothing for a while although messages
// were pending.
var errScanStalled = errors.New("kv: listing consumer stalled")

// scan reads the headers of the latest revision of every key with a temporary ordered
// consumer. A consumer that delivers nothing at first although messages are pending (its
// first pull reached it before its server listened and was lost; the iterator would notice
// only after missing heartbeats for longer than a listing may take) is replaced by a new
// one, within ctx.
func (n *jsNS) scan(ctx context.Context) (map[string]*jsEntry, error) {
	st, err := n.ensure(ctx)
	if err != nil {
		return nil, err
	}
	// As the watch's snapshot, the listing reaches the stream leader's last sequence even
	// when the consumer runs on a replica that lags.
	si, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var floor uint64
	if si.State.Msgs > 0 {
		floor = si.State.LastSeq
	}
	for {
		out, err := n.scanOnce(ctx, st, floor)
		if !errors.Is(err, errScanStalled) {
			return out, err
		}
		n.s.log.Debug("kv: listing consumer stalled; starting another", "namespace", n.name)
	}
}

// scanOnce is one attempt of scan with one consumer.
func (n *jsNS) scanOnce(ctx context.Context, st jetstream.Stream, floor uint64) (map[string]*jsEntry, error) {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.subject + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:    true,
		// The server drops the consumer this long after the listing stopped pulling.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	out := map[string]*jsEntry{}
	var seen uint64
	// done reports whether nothing is pending and the listing reached the floor (or the
	// leader no longer has the floor's message).
	done := func(pending uint64) (bool, error) {
		if pending > 0 {
			return false, nil
		}
		if seen >= floor {
			return true, nil
		}
		has, err := n.leaderHas(ctx, floor)
		return !has, err
	}
	if info := cons.CachedInfo(); info != nil {
		if ok, err := done(info.NumPending); ok || err != nil {
			return out, err
		}
	}
	// One pull iterator for the whole listing: the ordered consumer makes a new server-side
	// consumer on every Fetch, and a pull sent to a consumer just made on another server
	// may find it not yet listening ("no responders"): listings of a few thousand keys
	// failed that way.
	it, err := cons.Messages(jetstream.PullMaxMessages(500))
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	got := 0
	for {
		wait := time.Second
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if wait <= 0 {
			return nil, context.DeadlineExceeded
		}
		m, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			// Nothing came: the keys pending at the start may have expired since, or the
			// consumer stalled.
			info, err := cons.Info(ctx)
			if err != nil {
				return nil, err
			}
			if ok, err := done(info.NumPending); ok || err != nil {
				return out, err
			}
			if got == 0 && info.NumPending > 0 {
				// Pending messages, and not one delivered: the first pull was lost.
				return nil, errScanStalled
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		got++
		md, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		key, ok := decodeKey(strings.TrimPrefix(m.Subject(), n.subject))
		if ok {
			out[key] = parseEntry(md.Sequence.Stream, m.Headers(), len(m.Data()))
		}
		seen = max(seen, md.Sequence.Stream)
		if ok, err := done(md.NumPending); ok || err != nil {
			return out, err
		}
	}
}
