package clustered

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/durable"
)

// The cluster's alarm index: one JetStream KV bucket per namespace, one key per object with
// an alarm (its ID in hex), the value its due time and failed attempts. Every node's
// namespace runs its alarm scheduler over the same index; the lease decides which node runs
// a due alarm (durable.ErrOwnedElsewhere makes the others defer it).
const (
	alarmBucketPrefix        = "verge_do_alarms_"
	alarmBucketPrefixEncoded = "verge_do_alarms-"
	// alarmOpTimeout bounds one JetStream call of the index: a stream without a leader
	// does not answer at all.
	alarmOpTimeout = 5 * time.Second
	// alarmLoadTimeout bounds opening a namespace's index: the bucket, its watch, and
	// reading every entry.
	alarmLoadTimeout = 30 * time.Second
	// alarmMarkerTTL is how long the marker of a removed alarm stays in the bucket; then
	// the key is gone, so that the bucket does not grow with every object that ever had an
	// alarm. A node whose watch is cut off for longer could miss a removal.
	alarmMarkerTTL = 24 * time.Hour
	// alarmValueSize is a value's size: due time (Unix ms, as the SQLite index keeps it)
	// and retries, big-endian.
	alarmValueSize = 12
)

var plainBucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// AlarmBucketName returns the KV bucket of namespace's alarm index. Bucket names allow only
// letters, digits, '_' and '-': other names (a namespace may contain '.') are encoded in
// base32 behind another prefix, as LogStreamName does, so that the mapping is one-to-one.
func AlarmBucketName(namespace string) string {
	if plainBucketName.MatchString(namespace) {
		return alarmBucketPrefix + namespace
	}
	return alarmBucketPrefixEncoded + logB32.EncodeToString([]byte(namespace))
}

// Alarms is a namespace's alarm index shared by the nodes of a cluster (durable.AlarmStore,
// durable.AlarmDeferrer, durable.AlarmNotifier). Every change is acknowledged by JetStream
// (stored on a quorum of replicas) before its method returns. Each node keeps the whole
// index in memory, fed by a watch of the bucket and by its own acknowledged writes (ordered
// by the entries' revisions), so Get and Next read memory. Done and Reschedule are
// compare-and-set on the entry's revision: an alarm set again while it ran is kept.
type Alarms struct {
	namespace string
	kv        jetstream.KeyValue
	prefix    string // of the bucket's subjects, before the key
	cc        jetstream.ConsumeContext
	log       *slog.Logger

	ready     chan struct{} // closed when the watch delivered every entry present at its start
	readyOnce sync.Once

	mu         sync.Mutex
	idx        map[durable.ID]*alarmEntry
	due        alarmHeap      // live entries by due time
	pos        uint64         // the last revision the watch delivered
	notify     map[int]func() // the namespaces' wake-ups
	nextNotify int
	timer      *time.Timer // wakes the namespaces when the earliest deferral ends
	timerAt    time.Time
	closed     bool
}

var (
	_ durable.AlarmStore    = (*Alarms)(nil)
	_ durable.AlarmDeferrer = (*Alarms)(nil)
	_ durable.AlarmNotifier = (*Alarms)(nil)
)

// alarmEntry is one object's alarm as this node knows it.
type alarmEntry struct {
	id      durable.ID
	at      time.Time
	retries int
	rev     uint64 // revision of the KV entry
	// pending marks an alarm this node removed whose removal marker the watch has not
	// delivered yet: older values the watch still delivers are ignored.
	pending bool
	// deferUntil hides the alarm from this node's Next (Defer).
	deferUntil time.Time
	index      int // in Alarms.due; -1 when not in it
}

// dueAt is when the entry may be fired here.
func (e *alarmEntry) dueAt() time.Time {
	if e.deferUntil.After(e.at) {
		return e.deferUntil
	}
	return e.at
}

// alarmWatchHeartbeat is the idle heartbeat of a node's watch of the index: two missed
// heartbeats (the server that held the watch's consumer died) make the watch be recreated
// where it stopped.
const alarmWatchHeartbeat = time.Second

// openAlarms opens namespace's index (creating its bucket with replicas replicas), reads it
// and starts following it.
func openAlarms(ctx context.Context, js jetstream.JetStream, replicas int, namespace string, log *slog.Logger) (*Alarms, error) {
	if namespace == "" {
		return nil, fmt.Errorf("durable: alarm index of an unnamed namespace: %w", durable.ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, alarmLoadTimeout)
	defer cancel()
	name := AlarmBucketName(namespace)
	kv, err := js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         name,
			Description:    "Verge Durable Object alarms of namespace " + namespace,
			History:        1,
			MaxValueSize:   1024, // the value, 12 bytes; a removal's headers are larger
			Replicas:       max(replicas, 1),
			Storage:        jetstream.FileStorage,
			LimitMarkerTTL: alarmMarkerTTL, // lets removals carry a TTL (PurgeTTL)
			Metadata:       map[string]string{"verge_namespace": namespace},
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, classify("open alarm index", err)
	}
	a := &Alarms{
		namespace: namespace, kv: kv, log: log, prefix: "$KV." + name + ".",
		ready: make(chan struct{}), idx: map[durable.ID]*alarmEntry{},
	}
	// A bucket created a moment ago (here or by another node at the same time) may not
	// answer yet while its stream elects a leader: tried again until ctx ends.
	for {
		if err = a.follow(ctx, js, name); err == nil || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil {
		return nil, classify("watch alarm index", err)
	}
	select {
	case <-a.ready:
		return a, nil
	case <-ctx.Done():
		a.Close()
		return nil, classify("read alarm index", ctx.Err())
	}
}

// follow starts the watch: an ordered consumer of the bucket's stream, from the last value
// of every key on, with a short heartbeat (the KV client's own watch keeps a 5 s one, which
// left a node's index about 15 s behind when the server holding its consumer died).
func (a *Alarms) follow(ctx context.Context, js jetstream.JetStream, bucket string) error {
	octx, cancel := context.WithTimeout(ctx, alarmOpTimeout)
	defer cancel()
	st, err := js.Stream(octx, "KV_"+bucket)
	if err != nil {
		return err
	}
	cons, err := st.OrderedConsumer(octx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{a.prefix + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(a.onMessage, jetstream.PullHeartbeat(alarmWatchHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			a.log.Debug("durable: alarm index watch", "namespace", a.namespace, "err", err)
		}))
	if err != nil {
		return err
	}
	a.cc = cc
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		a.loaded() // an empty bucket: nothing to read first
	}
	go a.watchEnded(cc)
	return nil
}

// loaded marks the first reading of the index complete.
func (a *Alarms) loaded() { a.readyOnce.Do(func() { close(a.ready) }) }

// onMessage applies one message of the watch.
func (a *Alarms) onMessage(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		return
	}
	op := m.Headers().Get("KV-Operation")
	marker := op == "DEL" || op == "PURGE" || m.Headers().Get(jetstream.MarkerReasonHeader) != ""
	if a.applyWatched(strings.TrimPrefix(m.Subject(), a.prefix), m.Data(), meta.Sequence.Stream, marker) && a.isReady() {
		a.wake()
	}
	if meta.NumPending == 0 {
		a.loaded()
	}
}

func (a *Alarms) isReady() bool {
	select {
	case <-a.ready:
		return true
	default:
		return false
	}
}

// watchEnded logs the end of the watch unless the index was closed.
func (a *Alarms) watchEnded(cc jetstream.ConsumeContext) {
	<-cc.Closed()
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if !closed {
		a.log.Warn("durable: the alarm index watch ended; this node no longer sees other nodes' alarm changes", "namespace", a.namespace)
	}
}

// applyWatched applies one change delivered by the watch (key, value, revision, and
// whether it is a removal's marker); it reports whether Next may answer differently now.
func (a *Alarms) applyWatched(key string, value []byte, rev uint64, marker bool) bool {
	id, err := durable.ParseID(a.namespace, key)
	var at time.Time
	var retries int
	if err == nil && !marker {
		at, retries, err = decodeAlarm(value)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pos = max(a.pos, rev)
	if err != nil {
		a.log.Warn("durable: ignoring an unreadable alarm index entry", "namespace", a.namespace, "key", key, "err", err)
		return false
	}
	e := a.idx[id]
	switch {
	case e != nil && e.pending:
		// Removed here: values written before the removal are stale; its marker (or a
		// later one) ends the wait.
		if marker {
			a.drop(e)
		}
		return false
	case e != nil && rev <= e.rev:
		return false // this node's own write, applied when it was acknowledged
	case marker:
		if e == nil {
			return false
		}
		a.drop(e)
		return true
	}
	a.put(id, at, retries, rev)
	return true
}

// applyOwn applies this node's acknowledged write of revision rev.
func (a *Alarms) applyOwn(id durable.ID, at time.Time, retries int, rev uint64) {
	a.mu.Lock()
	if rev <= a.pos {
		a.mu.Unlock()
		return // the watch delivered it already, or a later change
	}
	if e := a.idx[id]; e != nil && !e.pending && rev <= e.rev {
		a.mu.Unlock()
		return
	}
	a.put(id, at, retries, rev)
	a.mu.Unlock()
	a.wake()
}

// put makes the entry of id live with these values; the caller holds a.mu.
func (a *Alarms) put(id durable.ID, at time.Time, retries int, rev uint64) {
	e := a.idx[id]
	if e == nil {
		e = &alarmEntry{id: id, index: -1}
		a.idx[id] = e
	}
	e.at, e.retries, e.rev, e.pending, e.deferUntil = at, retries, rev, false, time.Time{}
	if e.index < 0 {
		heap.Push(&a.due, e)
	} else {
		heap.Fix(&a.due, e.index)
	}
}

// drop forgets e; the caller holds a.mu.
func (a *Alarms) drop(e *alarmEntry) {
	if e.index >= 0 {
		heap.Remove(&a.due, e.index)
	}
	delete(a.idx, e.id)
}

// markPending takes e out of the schedule until the watch delivers its removal; the caller
// holds a.mu.
func (a *Alarms) markPending(e *alarmEntry) {
	if e.index >= 0 {
		heap.Remove(&a.due, e.index)
	}
	e.pending = true
}

func encodeAlarm(at time.Time, retries int) []byte {
	b := make([]byte, alarmValueSize)
	binary.BigEndian.PutUint64(b, uint64(at.UnixMilli()))
	binary.BigEndian.PutUint32(b[8:], uint32(retries))
	return b
}

func decodeAlarm(b []byte) (time.Time, int, error) {
	if len(b) != alarmValueSize {
		return time.Time{}, 0, fmt.Errorf("alarm value of %d bytes, want %d", len(b), alarmValueSize)
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b))), int(binary.BigEndian.Uint32(b[8:])), nil
}

// Get returns the object's alarm from memory.
func (a *Alarms) Get(_ context.Context, id durable.ID) (durable.Alarm, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.idx[id]
	if e == nil || e.pending {
		return durable.Alarm{}, false, nil
	}
	return durable.Alarm{ID: id, At: e.at, Retries: e.retries}, true, nil
}

// Set sets the object's alarm to at with Retries 0.
func (a *Alarms) Set(ctx context.Context, id durable.ID, at time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, alarmOpTimeout)
	defer cancel()
	at = time.UnixMilli(at.UnixMilli()) // what the entry holds
	rev, err := a.kv.Put(ctx, id.String(), encodeAlarm(at, 0))
	if err != nil {
		return classify("set alarm", err)
	}
	a.applyOwn(id, at, 0, rev)
	return nil
}

// Delete removes the object's alarm.
func (a *Alarms) Delete(ctx context.Context, id durable.ID) error {
	a.mu.Lock()
	e := a.idx[id]
	fresh, live := e == nil, e != nil && !e.pending
	if fresh {
		e = &alarmEntry{id: id, index: -1}
		a.idx[id] = e
	}
	was := *e
	a.markPending(e)
	a.mu.Unlock()
	a.wake()
	ctx, cancel := context.WithTimeout(ctx, alarmOpTimeout)
	defer cancel()
	if err := a.kv.Purge(ctx, id.String(), jetstream.PurgeTTL(alarmMarkerTTL)); err != nil {
		// Perhaps not removed: what this node knew stands (the watch delivers the marker
		// if the removal was stored after all).
		a.mu.Lock()
		if a.idx[id] == e && e.pending {
			switch {
			case live:
				a.put(id, was.at, was.retries, was.rev)
			case fresh:
				a.drop(e)
			}
		}
		a.mu.Unlock()
		return classify("delete alarm", err)
	}
	return nil
}

// Next returns the earliest alarm not deferred here; when the earliest is deferred, none
// (the namespace is woken when the deferral ends).
func (a *Alarms) Next(ctx context.Context) (durable.Alarm, bool, error) {
	if err := ctx.Err(); err != nil {
		return durable.Alarm{}, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.due) == 0 {
		return durable.Alarm{}, false, nil
	}
	e := a.due[0]
	if until := e.deferUntil; time.Now().Before(until) {
		a.wakeAt(until)
		return durable.Alarm{}, false, nil
	}
	return durable.Alarm{ID: e.id, At: e.at, Retries: e.retries}, true, nil
}

// Reschedule moves the alarm of id, if it is still due at prev, to at with retries
// (compare-and-set on the entry's revision).
func (a *Alarms) Reschedule(ctx context.Context, id durable.ID, prev, at time.Time, retries int) error {
	rev, ok := a.revisionAt(id, prev)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, alarmOpTimeout)
	defer cancel()
	at = time.UnixMilli(at.UnixMilli()) // what the entry holds
	nrev, err := a.kv.Update(ctx, id.String(), encodeAlarm(at, retries), rev)
	switch {
	case isWrongLastSeq(err):
		// Set again, removed, or rescheduled by another node meanwhile, and this node's
		// index does not show it yet: it must not fire the entry it still holds again at
		// once (three nodes did so hundreds of times a second while a takeover failed).
		a.Defer(id, prev, at)
		return nil
	case err != nil:
		return classify("reschedule alarm", err)
	}
	a.applyOwn(id, at, retries, nrev)
	return nil
}

// Done removes the alarm of id if it is still due at prev (compare-and-set on the entry's
// revision: an alarm set again while it ran stays).
func (a *Alarms) Done(ctx context.Context, id durable.ID, prev time.Time) error {
	rev, ok := a.revisionAt(id, prev)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, alarmOpTimeout)
	defer cancel()
	err := a.kv.Purge(ctx, id.String(), jetstream.LastRevision(rev), jetstream.PurgeTTL(alarmMarkerTTL))
	switch {
	case isWrongLastSeq(err):
		return nil
	case err != nil:
		return classify("alarm done", err)
	}
	a.mu.Lock()
	e := a.idx[id]
	done := e != nil && !e.pending && e.rev == rev
	if done {
		a.markPending(e)
	}
	a.mu.Unlock()
	if done {
		a.wake()
	}
	return nil
}

// revisionAt returns the revision of id's live alarm if it is due at at.
func (a *Alarms) revisionAt(id durable.ID, at time.Time) (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.idx[id]
	if e == nil || e.pending || !e.at.Equal(at) {
		return 0, false
	}
	return e.rev, true
}

// Defer hides the alarm of id, if it is still due at at, from this node's Next until
// until. The shared entry is unchanged; a change of it ends the deferral.
func (a *Alarms) Defer(id durable.ID, at, until time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.idx[id]
	if e == nil || e.pending || !e.at.Equal(at) {
		return
	}
	e.deferUntil = until
	heap.Fix(&a.due, e.index)
}

// Notify registers f, called whenever a change of the index (this node's or another's) or
// the end of a deferral may change what Next returns. f must not block.
func (a *Alarms) Notify(f func()) (stop func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.notify == nil {
		a.notify = map[int]func(){}
	}
	k := a.nextNotify
	a.nextNotify++
	a.notify[k] = f
	return func() {
		a.mu.Lock()
		delete(a.notify, k)
		a.mu.Unlock()
	}
}

// wake calls the registered wake-ups.
func (a *Alarms) wake() {
	a.mu.Lock()
	fs := make([]func(), 0, len(a.notify))
	for _, f := range a.notify {
		fs = append(fs, f)
	}
	a.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// wakeAt makes sure the wake-ups are called at t (or earlier); the caller holds a.mu.
func (a *Alarms) wakeAt(t time.Time) {
	if a.closed {
		return
	}
	now := time.Now()
	if a.timer != nil && a.timerAt.After(now) && !a.timerAt.After(t) {
		return // an earlier wake-up is armed
	}
	if a.timer != nil {
		a.timer.Stop()
	}
	a.timerAt = t
	a.timer = time.AfterFunc(t.Sub(now), a.wake)
}

// Close stops following the bucket.
func (a *Alarms) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	if a.timer != nil {
		a.timer.Stop()
	}
	a.mu.Unlock()
	if a.cc != nil {
		a.cc.Stop()
	}
	return nil
}

// alarmHeap orders live entries by when they may fire here.
type alarmHeap []*alarmEntry

func (h alarmHeap) Len() int { return len(h) }
func (h alarmHeap) Less(i, j int) bool {
	a, b := h[i].dueAt(), h[j].dueAt()
	if !a.Equal(b) {
		return a.Before(b)
	}
	return string(h[i].id[:]) < string(h[j].id[:])
}
func (h alarmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *alarmHeap) Push(x any) {
	e := x.(*alarmEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *alarmHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
