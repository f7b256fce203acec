// Package purge carries cache purges from the node where they are issued to every node of a
// cluster, including nodes that are down or cut off at the time: purges are kept in a
// replicated JetStream stream (StreamName) that every node reads in order, remembering the
// last one it applied, so a node that comes back applies the purges it missed before it
// forgets them. A node whose missed purges are no longer in the stream (it was away longer
// than the stream keeps them, or the stream was recreated) drops its whole cache instead.
//
// The node that issues a purge applies it itself first, then publishes it and collects the
// other nodes' confirmations for a bounded time (Options.AckWait).
package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
)

// Names of the stream and its subject.
const (
	// StreamName is the JetStream stream that keeps the purges.
	StreamName = "verge_purges"
	// Subject is the stream's only subject.
	Subject = cluster.SubjectPrefix + "purges.log"
)

// Defaults of Options.
const (
	// DefaultMaxAge is how long the stream keeps a purge: a node away for longer drops its
	// whole cache when it comes back.
	DefaultMaxAge = 24 * time.Hour
	// DefaultMaxBytes bounds the stream's size; the oldest purges go first.
	DefaultMaxBytes = 64 << 20
	// DefaultAckWait bounds how long Publish waits for the other nodes' confirmations.
	DefaultAckWait = 5 * time.Second
	// membersWait is how long Publish listens for the members' ping answers.
	membersWait = time.Second
	// replyWindow: purges older than this are applied without a confirmation (nobody waits
	// for one any more; a node catching up would only send answers into the void).
	replyWindow = time.Minute
	// startSlack: a node without a recorded position reads the purges published since this
	// long before it started (an object it cached meanwhile may be stale already; the
	// stream's clock may differ from this one's).
	startSlack = time.Minute
	// publishRetryWait is the pause between attempts to store a purge while the stream has
	// no leader.
	publishRetryWait = 250 * time.Millisecond
	// consumerHeartbeat is how often the server signals an idle consumer: two missed ones
	// (its server died) make the consumer start again elsewhere.
	consumerHeartbeat = time.Second
	// retryWait is the pause between attempts to set up the stream and consumer.
	retryWait = time.Second
)

// Header fields of a purge message.
const (
	hdrOrigin = "Verge-Purge-Origin"
	// hdrSender names the Bus that sent it: during an upgrade two processes share a node
	// name, and the one that did not send a purge must still apply it to its memory tier.
	hdrSender = "Verge-Purge-Sender"
	hdrReply  = "Verge-Purge-Reply"
)

// Request is one purge: any mix of URLs, prefixes and tags, or everything.
type Request struct {
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	All      bool     `json:"all,omitempty"`
}

// Count counts the objects one node deleted, in all and per tier.
type Count struct {
	Objects int `json:"purged"`
	Memory  int `json:"memory"`
	Disk    int `json:"disk"`
}

// NodeCount is one node's confirmation of a purge.
type NodeCount struct {
	Node string `json:"node"`
	Count
	// Error is why the node could not apply the purge.
	Error string `json:"error,omitempty"`
}

// Result is what Publish learned.
type Result struct {
	// Sequence is the purge's position in the stream (0 when it was not stored).
	Sequence uint64
	// Nodes are the confirmations received, this node's included, sorted by node name.
	Nodes []NodeCount
	// Members are the nodes known: those that answered a ping, confirmed the purge or (with
	// an embedded server) are peers of the JetStream meta group, sorted.
	Members []string
	// Missing are the members that did not confirm within the wait; they apply the purge
	// when they read it from the stream.
	Missing []string
}

// Options configure a Bus.
type Options struct {
	// Node is this node's cluster membership. Required.
	Node *cluster.Node
	// Apply applies a purge to this node's cache. Required. It must not fail for a request
	// that Publish was given.
	Apply func(Request) (Count, error)
	// StateFile remembers the last purge applied, so that a restarted node applies those it
	// missed. Empty means none: a node starts with the purges of about the last minute
	// (right for a cache that does not survive a restart).
	StateFile string
	// MaxAge and MaxBytes bound the stream when this node creates it; zero means
	// DefaultMaxAge and DefaultMaxBytes.
	MaxAge   time.Duration
	MaxBytes int64
	// AckWait bounds waiting for confirmations in Publish; zero means DefaultAckWait.
	AckWait time.Duration
	// Logger receives purges received, catch-ups and errors. Nil means none.
	Logger *slog.Logger
}

// Bus sends this node's purges to the cluster and applies the other nodes' purges. Its
// methods are safe for concurrent use.
type Bus struct {
	o      Options
	node   *cluster.Node
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed once the stream is read
	caught chan struct{} // closed once the purges published before the first read are applied

	id       string // this Bus, in hdrSender
	streamOK atomic.Bool

	mu       sync.Mutex
	known    bool   // last is meaningful
	resync   bool   // the state file was unreadable: drop the cache before reading on
	last     uint64 // stream sequence of the last purge applied (or skipped as our own)
	changed  chan struct{}
	target   uint64 // caught closes when last reaches it
	isCaught bool

	sent, received, applied, publishFailures, applyFailures, resyncs atomic.Uint64
}

// ErrStopped is returned by WaitApplied after Close.
var ErrStopped = errors.New("purge: bus closed")

// Start starts reading the stream in the background (creating it when it does not exist)
// and returns at once: a cluster that is not reachable yet is waited for.
func Start(o Options) (*Bus, error) {
	if o.Node == nil || o.Apply == nil {
		return nil, errors.New("purge: Options.Node and Options.Apply are required")
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{o: o, node: o.Node, log: log, id: nats.NewInbox()[len(nats.InboxPrefix):], done: make(chan struct{}), ready: make(chan struct{}), caught: make(chan struct{}), changed: make(chan struct{})}
	if o.StateFile != "" {
		seq, ok, err := readState(o.StateFile)
		switch {
		case errors.Is(err, errBadState):
			// Which purges were applied is unknown: start after the stream's last one,
			// dropping the whole cache first.
			log.Warn("cluster purges: unreadable state file", "file", o.StateFile, "err", err)
			b.resync = true
		case err != nil:
			return nil, err
		}
		b.last, b.known = seq, ok
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.consume()
	return b, nil
}

// Close stops reading the stream; Publish fails afterwards.
func (b *Bus) Close() {
	b.cancel()
	<-b.done
}

// Ready is closed once the bus reads the stream: purges published from then on are
// confirmed by this node.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// CaughtUp is closed once this node has applied the purges that were in the stream when it
// first read it: what it serves from a cache that survived a restart is no longer stale.
// A node without a recorded position (its cache starts empty) is caught up at once.
func (b *Bus) CaughtUp() <-chan struct{} { return b.caught }

// Applied returns the stream sequence of the last purge this node applied, and whether it
// has one.
func (b *Bus) Applied() (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, b.known
}

// WaitApplied waits until this node has applied the purge at stream sequence seq (or a
// later one), or ctx ends.
func (b *Bus) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		b.mu.Lock()
		ok := b.known && b.last >= seq
		ch := b.changed
		b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return ErrStopped
		}
	}
}

// consume is the goroutine that reads the stream, set up again after errors, until Close.
func (b *Bus) consume() {
	defer close(b.done)
	readyOnce := sync.OnceFunc(func() { close(b.ready) })
	for {
		cc, restart, err := b.startConsumer()
		if err == nil {
			readyOnce()
			select {
			case <-b.ctx.Done():
				cc.Stop()
				return
			case <-restart:
				cc.Stop()
				b.log.Warn("cluster purges: the stream went away; setting it up again")
			}
		} else if b.ctx.Err() == nil {
			b.log.Warn("cluster purges: cannot read the purge stream yet; retrying", "err", err)
		}
		t := time.NewTimer(retryWait)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// ensureStream creates the stream unless it exists and returns its state.
func (b *Bus) ensureStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	js := b.node.JetStream()
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        StreamName,
			Description: "Verge cache purges",
			Subjects:    []string{Subject},
			Replicas:    b.node.Replicas(),
			MaxAge:      b.o.MaxAge,
			MaxBytes:    b.o.MaxBytes,
			Discard:     jetstream.DiscardOld,
			Storage:     jetstream.FileStorage,
			Duplicates:  2 * time.Minute,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, StreamName)
		}
	}
	if err != nil {
		return nil, err
	}
	b.streamOK.Store(true)
	return s.CachedInfo(), nil
}

// startConsumer waits for JetStream, makes sure the stream exists, catches up with what the
// stream no longer holds, and starts an ordered consumer after the last purge applied.
func (b *Bus) startConsumer() (jetstream.ConsumeContext, <-chan struct{}, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := b.node.WaitJetStream(ctx); err != nil {
		return nil, nil, err
	}
	info, err := b.ensureStream(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("purge stream: %w", err)
	}
	// The name is new on each start: the consumer of a process that died lingers on the
	// server until InactiveThreshold, and its settings cannot be changed.
	cfg := jetstream.OrderedConsumerConfig{
		NamePrefix:        fmt.Sprintf("verge_purges_%s_%x", b.node.Name(), time.Now().UnixNano()),
		InactiveThreshold: time.Minute,
	}
	b.mu.Lock()
	if !b.isCaught {
		b.target = info.State.LastSeq
	}
	switch {
	case b.resync:
		b.resync = false
		b.resyncLocked("the record of the purges applied was lost", info.State.LastSeq)
	case !b.known:
		start := time.Now().Add(-startSlack)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	case b.last > info.State.LastSeq:
		// The stream holds fewer purges than this node applied: it was deleted and made
		// again, and what was published in between is unknown.
		b.resyncLocked("the purge stream was recreated", info.State.LastSeq)
	case info.State.FirstSeq > b.last+1:
		b.resyncLocked("purges were published while this node was away and are no longer kept", info.State.FirstSeq-1)
	}
	if b.known {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = b.last + 1
	}
	b.checkCaughtLocked()
	b.mu.Unlock()
	cons, err := b.node.JetStream().OrderedConsumer(ctx, StreamName, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("purge consumer: %w", err)
	}
	restart := make(chan struct{}, 1)
	cc, err := cons.Consume(b.handle, jetstream.PullHeartbeat(consumerHeartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) && !b.streamExists() {
			select {
			case restart <- struct{}{}:
			default:
			}
			return
		}
		b.log.Debug("cluster purges: consumer error", "err", err)
	}))
	if err != nil {
		return nil, nil, fmt.Errorf("purge consumer: %w", err)
	}
	return cc, restart, nil
}

func (b *Bus) streamExists() bool {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	_, err := b.node.JetStream().Stream(ctx, StreamName)
	return !errors.Is(err, jetstream.ErrStreamNotFound)
}

// resyncLocked drops the whole cache because purges were missed, and continues after seq.
func (b *Bus) resyncLocked(why string, seq uint64) {
	n, err := b.o.Apply(Request{All: true})
	b.resyncs.Add(1)
	b.log.Warn("cluster purges: "+why+"; dropped the whole cache so that nothing purged is served",
		"after", b.last, "continue_at", seq+1, "objects", n.Objects, "err", err)
	b.setLastLocked(seq)
}

// checkCaughtLocked closes caught when the purges up to target are applied (or there is no
// position to catch up from).
func (b *Bus) checkCaughtLocked() {
	if !b.isCaught && (!b.known || b.last >= b.target) {
		b.isCaught = true
		close(b.caught)
	}
}

func (b *Bus) setLastLocked(seq uint64) {
	b.last, b.known = seq, true
	b.checkCaughtLocked()
	close(b.changed)
	b.changed = make(chan struct{})
	if b.o.StateFile != "" {
		if err := writeState(b.o.StateFile, seq); err != nil {
			b.log.Warn("cluster purges: cannot record the last purge applied; a restart will apply some again", "file", b.o.StateFile, "err", err)
		}
	}
}

// handle applies one purge from the stream. The ordered consumer calls it for one message
// at a time, in stream order.
func (b *Bus) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		b.log.Warn("cluster purges: message without metadata", "err", err)
		return
	}
	seq := meta.Sequence.Stream
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known && seq <= b.last {
		return // delivered again after a consumer reset
	}
	if b.known && seq > b.last+1 {
		b.resyncLocked("purges were removed from the stream before this node read them", seq-1)
	}
	origin := msg.Headers().Get(hdrOrigin)
	if msg.Headers().Get(hdrSender) == b.id {
		// Applied by Publish before it was sent.
		b.setLastLocked(seq)
		return
	}
	b.received.Add(1)
	var req Request
	var n Count
	if err = json.Unmarshal(msg.Data(), &req); err == nil {
		n, err = b.o.Apply(req)
	}
	if err != nil {
		b.applyFailures.Add(1)
		b.log.Warn("cluster purges: purge not applied", "from", origin, "seq", seq, "err", err)
	} else {
		b.applied.Add(1)
		b.log.Info("cluster purges: purge applied", "from", origin, "seq", seq, "all", req.All, "urls", len(req.URLs),
			"prefixes", len(req.Prefixes), "tags", len(req.Tags), "objects", n.Objects)
	}
	b.setLastLocked(seq)
	if reply := msg.Headers().Get(hdrReply); reply != "" && time.Since(meta.Timestamp) < replyWindow {
		nc := NodeCount{Node: b.node.Name(), Count: n}
		if err != nil {
			nc.Error = err.Error()
		}
		data, _ := json.Marshal(nc)
		_ = b.node.Conn().Publish(reply, data)
	}
}

// Publish sends a purge that this node has applied already (local is its count) to every
// node, and waits up to AckWait for the members' confirmations. When the purge could not be
// stored in the stream, the error wraps cluster.ErrUnavailable and the result holds this
// node alone: the other nodes never learn of it.
func (b *Bus) Publish(ctx context.Context, req Request, local Count) (Result, error) {
	self := NodeCount{Node: b.node.Name(), Count: local}
	res := Result{Nodes: []NodeCount{self}, Members: []string{self.Node}}
	data, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	fail := func(err error) (Result, error) {
		b.publishFailures.Add(1)
		return res, fmt.Errorf("the purge did not reach the cluster: %w: %w", cluster.ErrUnavailable, err)
	}
	if b.ctx.Err() != nil {
		return fail(ErrStopped)
	}
	nc := b.node.Conn()
	if !nc.IsConnected() {
		return fail(errors.New("not connected to NATS"))
	}
	if max := nc.MaxPayload(); int64(len(data))+512 > max {
		b.publishFailures.Add(1)
		return res, fmt.Errorf("the purge did not reach the cluster: it is %d bytes, the cluster's messages are limited to %d: send fewer entries per request", len(data), max)
	}
	pctx, cancel := context.WithTimeout(ctx, b.o.AckWait)
	defer cancel()
	if !b.streamOK.Load() {
		if _, err := b.ensureStream(pctx); err != nil {
			return fail(err)
		}
	}
	inbox := nc.NewRespInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return fail(err)
	}
	defer sub.Unsubscribe()
	m := nats.NewMsg(Subject)
	m.Header.Set(hdrOrigin, self.Node)
	m.Header.Set(hdrSender, b.id)
	m.Header.Set(hdrReply, inbox)
	m.Data = data
	// While the stream elects a new leader (its old one's node just died) there are no
	// responders for a moment: keep trying within the wait. The message ID makes retries
	// harmless.
	ack, err := b.node.JetStream().PublishMsg(pctx, m, jetstream.WithMsgID(inbox), jetstream.WithExpectStream(StreamName),
		jetstream.WithRetryWait(publishRetryWait), jetstream.WithRetryAttempts(int(b.o.AckWait/publishRetryWait)))
	if err != nil {
		return fail(err)
	}
	b.sent.Add(1)
	res.Sequence = ack.Sequence

	members := make(chan []cluster.Member, 1)
	go func() { members <- b.node.Members(pctx, min(membersWait, b.o.AckWait)) }()
	known := map[string]bool{self.Node: true}
	for _, p := range b.metaPeers() {
		known[p] = true
	}
	acked := map[string]bool{self.Node: true}
	membersIn := false
wait:
	for !(membersIn && allIn(known, acked)) {
		select {
		case ms := <-members:
			membersIn = true
			for _, m := range ms {
				known[m.Node] = true
			}
		case r := <-replies:
			var c NodeCount
			if json.Unmarshal(r.Data, &c) != nil || c.Node == "" || acked[c.Node] {
				continue
			}
			acked[c.Node], known[c.Node] = true, true
			res.Nodes = append(res.Nodes, c)
		case <-pctx.Done():
			break wait
		}
	}
	res.Members = res.Members[:0]
	for n := range known {
		res.Members = append(res.Members, n)
		if !acked[n] {
			res.Missing = append(res.Missing, n)
		}
	}
	slices.Sort(res.Members)
	slices.Sort(res.Missing)
	slices.SortFunc(res.Nodes, func(a, b NodeCount) int { return strings.Compare(a.Node, b.Node) })
	return res, nil
}

func allIn(known, acked map[string]bool) bool {
	for n := range known {
		if !acked[n] {
			return false
		}
	}
	return true
}

// metaPeers lists the servers of the JetStream meta group as the embedded server sees them,
// offline ones included: with an embedded server, each is a Verge node of the same name.
func (b *Bus) metaPeers() []string {
	srv := b.node.Server()
	if srv == nil {
		return nil
	}
	js, err := srv.Jsz(&server.JSzOptions{})
	if err != nil || js.Meta == nil {
		return nil
	}
	out := []string{srv.Name()}
	for _, p := range js.Meta.Replicas {
		out = append(out, p.Name)
	}
	return out
}

var errBadState = errors.New("purge: state file is not a sequence number")

// readState reads the state file: the stream sequence of the last purge applied.
func readState(path string) (uint64, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("purge: state file: %w", err)
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %s holds %q", errBadState, path, data[:min(len(data), 40)])
	}
	return seq, true, nil
}

// writeState replaces the state file atomically.
func writeState(path string, seq uint64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(strconv.FormatUint(seq, 10) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
