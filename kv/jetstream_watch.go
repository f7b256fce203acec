package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch tuning.
const (
	// watchPullExpiry is the ordered consumer's pull expiry; heartbeats come every half of
	// it, and two missed ones end the watch: a watch that stopped receiving is noticed in
	// about this long.
	watchPullExpiry = 5 * time.Second
	// watchMaxBytes bounds the bytes one pull of the watch buffers (a value is up to 25 MiB).
	watchMaxBytes = 32 << 20
	// watchRetryMax caps the wait between attempts to start a watch.
	watchRetryMax = 5 * time.Second
)

func (n *jsNS) kick() {
	select {
	case n.kickc <- struct{}{}:
	default:
	}
}

// watchLoop keeps a watch on the bucket until the store closes: it creates the bucket when
// JetStream answers, loads a snapshot of every key, then applies every change. When the
// watch fails, or the connection drops or comes back, it starts again with a new snapshot.
func (n *jsNS) watchLoop() {
	defer n.s.done.Done()
	wait := 100 * time.Millisecond
	for {
		err := n.watch()
		select {
		case <-n.s.stop:
			n.setUnhealthy(errors.New("store closed"))
			return
		default:
		}
		n.setUnhealthy(err)
		t := time.NewTimer(wait)
		select {
		case <-n.s.stop:
			t.Stop()
			return
		case <-n.kickc:
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, watchRetryMax)
		if err == nil {
			wait = 100 * time.Millisecond
		}
	}
}

// watch runs one watch until it fails (the error), is kicked or the store stops (nil).
func (n *jsNS) watch() error {
	ctx, cancel := context.WithTimeout(context.Background(), JetStreamWriteTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	st, err := n.ensure(ctx)
	if err != nil {
		n.forget()
		return err
	}
	n.mu.Lock()
	snap := &snapshot{idx: map[string]*jsEntry{}, below: make(chan struct{}, 1)}
	n.next, n.active = snap, snap
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.next == snap { // abandoned before it loaded: release its values
			for k, e := range snap.idx {
				if n.idx[k] != e {
					n.s.cache.drop(e)
				}
			}
			n.next = nil
		}
		if n.active == snap {
			n.active = nil
		}
		n.mu.Unlock()
	}()
	// The stream leader's last sequence is where the snapshot must reach: the consumer may
	// run on a replica that is still catching up (a node just restarted), whose "nothing
	// pending" would otherwise end the snapshot early. Writes acknowledged after this are
	// applied to the snapshot as well.
	info, err := st.Info(ctx)
	if err != nil {
		n.forget()
		return err
	}
	if info.State.Msgs > 0 {
		snap.floor = info.State.LastSeq
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.subject + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		// The server drops the consumer of a stopped watch this long after.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		n.forget()
		return err
	}
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) { n.onMessage(snap, m) },
		jetstream.PullExpiry(watchPullExpiry),
		jetstream.PullMaxBytes(watchMaxBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			select {
			case failed <- err:
			default:
			}
		}))
	if err != nil {
		return err
	}
	defer cc.Stop()
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		n.mu.Lock()
		n.caughtUp(snap)
		n.mu.Unlock()
	}
	for {
		select {
		case <-n.s.stop:
			return nil
		case err := <-failed:
			return err
		case <-n.kickc:
			return errors.New("connection changed")
		case <-snap.below:
			// Nothing pending, but the snapshot has not reached the leader's last
			// sequence: either the replica lags (its messages are on their way), or that
			// message is gone (expired). Ask the leader.
			c, cancel := context.WithTimeout(context.Background(), JetStreamReadTimeout)
			has, err := n.leaderHas(c, snap.floor)
			cancel()
			switch {
			case err != nil:
				return err
			case !has:
				n.mu.Lock()
				snap.floor = 0
				n.caughtUp(snap)
				n.mu.Unlock()
			}
		}
	}
}

// caughtUp is called when the snapshot's consumer has nothing pending; n.mu is held.
func (n *jsNS) caughtUp(snap *snapshot) {
	if n.next != snap {
		return
	}
	if snap.seq >= snap.floor {
		n.finish(snap)
		return
	}
	select {
	case snap.below <- struct{}{}:
	default:
	}
}

// leaderHas asks the stream leader (not a replica, as direct gets may) whether the
// message seq exists.
func (n *jsNS) leaderHas(ctx context.Context, seq uint64) (bool, error) {
	m, err := n.s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+n.stream, fmt.Appendf(nil, `{"seq":%d}`, seq))
	if err != nil {
		return false, err
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return false, fmt.Errorf("message get: %w", err)
	}
	switch {
	case r.Error == nil:
		return true, nil
	case r.Error.Code == 404:
		return false, nil
	}
	return false, fmt.Errorf("message get: %s (%d)", r.Error.Description, r.Error.Code)
}

// onMessage applies one message of the watch.
func (n *jsNS) onMessage(snap *snapshot, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	key, ok := decodeKey(strings.TrimPrefix(m.Subject(), n.subject))
	if !ok {
		return
	}
	data := m.Data()
	e := parseEntry(md.Sequence.Stream, m.Headers(), len(data))
	n.mu.Lock()
	if n.active != snap { // a stopped watch's late delivery
		n.mu.Unlock()
		return
	}
	if n.next == snap {
		applyWatched(snap.idx, key, e)
		snap.seq = max(snap.seq, e.seq)
	}
	if n.next == snap || n.complete {
		if cur := n.idx[key]; applyWatched(n.idx, key, e) {
			if cur == nil || cur.deleted || e.deleted {
				n.sorted = nil
			}
			if cur != nil && (n.next != snap || snap.idx[key] != cur) {
				n.s.cache.drop(cur)
			}
		}
		n.watchSeq = max(n.watchSeq, e.seq)
	}
	if !e.deleted && (n.idx[key] == e || n.next == snap && snap.idx[key] == e) {
		n.s.cache.add(e, data)
	}
	if n.next == snap && md.NumPending == 0 {
		n.caughtUp(snap)
	}
	n.mu.Unlock()
	if f := n.s.onApply; f != nil {
		f(n.name, key, e.seq)
	}
}

// applyWatched applies a revision delivered by the watch to idx and reports whether it
// changed it. The watch delivers revisions in order, so once it delivered a delete the key
// needs no tombstone.
func applyWatched(idx map[string]*jsEntry, key string, e *jsEntry) bool {
	cur := idx[key]
	switch {
	case cur != nil && cur.seq > e.seq:
		return false
	case cur != nil && cur.seq == e.seq:
		if cur.deleted {
			delete(idx, key)
			return true
		}
		return false
	case e.deleted:
		if cur == nil {
			return false
		}
		delete(idx, key)
		return true
	}
	idx[key] = e
	return true
}

// applyLocal applies a revision this node wrote (acknowledged with its sequence), before
// the watch delivers it: this node reads its own writes at once. A delete the watch has not
// passed yet stays as a tombstone, so that an older revision still on its way does not
// bring the key back. v is the value to cache (owned by the cache from now on), or nil to
// cache none.
func (n *jsNS) applyLocal(key string, e *jsEntry, v []byte) {
	e.loaded.Store(n.s.now().UnixNano())
	n.mu.Lock()
	defer n.mu.Unlock()
	apply := func(idx map[string]*jsEntry, passed uint64) bool {
		cur := idx[key]
		if cur != nil && cur.seq >= e.seq {
			return false
		}
		if e.deleted && e.seq <= passed {
			delete(idx, key)
		} else {
			idx[key] = e
		}
		return true
	}
	if snap := n.next; snap != nil {
		apply(snap.idx, snap.seq)
	}
	cur := n.idx[key]
	if apply(n.idx, n.watchSeq) {
		if cur == nil || cur.deleted || e.deleted {
			n.sorted = nil
		}
		if cur != nil && (n.next == nil || n.next.idx[key] != cur) {
			n.s.cache.drop(cur)
		}
	}
	if v != nil && !e.deleted && (n.idx[key] == e || n.next != nil && n.next.idx[key] == e) {
		n.s.cache.add(e, v)
	}
}

// applyRead records a revision read from JetStream outside the watch, or fills the value
// of the indexed revision, and returns the revision to serve: the index's when it is newer
// (a replica answering a read may lag what this node already applied).
func (n *jsNS) applyRead(key string, e *jsEntry, v []byte) (*jsEntry, []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.idx[key]
	switch {
	case cur != nil && cur.seq > e.seq:
		if cv := cur.value(); cv != nil || cur.deleted {
			return cur, cv
		}
	case cur != nil && cur.seq == e.seq:
		cur.loaded.Store(e.loaded.Load())
		n.s.cache.add(cur, v)
	default:
		n.idx[key] = e
		if cur == nil || cur.deleted {
			n.sorted = nil
		}
		if cur != nil {
			n.s.cache.drop(cur)
		}
		n.s.cache.add(e, v)
	}
	return e, v
}

// finish makes a loaded snapshot the index; n.mu is held.
func (n *jsNS) finish(snap *snapshot) {
	if n.next != snap {
		return
	}
	for k, e := range n.idx {
		if snap.idx[k] != e {
			n.s.cache.drop(e)
		}
	}
	n.idx = snap.idx
	n.watchSeq = snap.seq
	n.complete = true
	n.sorted = nil
	n.next = nil
	if !n.healthy.Swap(true) {
		n.s.log.Debug("kv: watching the namespace's bucket", "namespace", n.name, "keys", len(n.idx))
		if f := n.s.onHealth; f != nil {
			f(n.name, true)
		}
	}
}
