package clustered

import (
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/durable"
)

// The write-batch log: one JetStream stream per namespace, one subject per object, one
// record per committed batch (its WAL pages) or takeover (no pages). Every append names the
// sequence of the object's previous message (expected last subject sequence), so an owner
// that lost its object to a takeover cannot append any more: JetStream refuses, not a clock.
//
// A batch record longer than one message may carry (Log.PartBytes) is appended as parts,
// each a message of its own in the same chain (so a stale owner's part is refused like a
// whole record) with the header Verge-Do-Part: i/n. The batch is committed when its last
// part is stored; a reader applies it only when it has read all n parts in order. An
// owner that dies between parts leaves a torn batch at the tail of the subject: it was
// never acknowledged, the next owner's takeover record follows it, and replay skips it.
const (
	logStreamPrefix        = "verge_do_log_"
	logStreamPrefixEncoded = "verge_do_log-"
	logSubjectPrefix       = cluster.SubjectPrefix + "dolog."
	hdrLease               = "Verge-Do-Lease"
	hdrKind                = "Verge-Do-Kind"
	kindBatch              = "batch"
	kindTakeover           = "takeover"
	// hdrPart numbers the parts of a batch whose record is split: "i/n", from 1/n to n/n.
	// A record of one part has no such header.
	hdrPart = "Verge-Do-Part"
	// logRecordRoom is what a record must leave of max_payload for its headers.
	logRecordRoom = 64 << 10
	// maxRecordParts bounds the parts of one batch a reader accepts: at the embedded
	// server's 32 MiB max_payload that is far beyond any database; at 1 MiB, 64 GiB.
	maxRecordParts = 1 << 16
)

// appendTimeout bounds appending one log message (a whole record or one part of a batch):
// JetStream's acknowledgement from a quorum of the replicas.
const appendTimeout = 10 * time.Second

// ErrFenced is wrapped by errors of appends refused because another owner appended to the
// object's log since this owner's last record: this process must stop serving the object.
var ErrFenced = errors.New("object log fenced by a newer owner")

var logB32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// LogStreamName returns the stream of namespace's write-batch log. Stream names allow no
// '.', which namespace names do: those are encoded (with another prefix, so that the mapping
// is one-to-one).
func LogStreamName(namespace string) string {
	if !strings.Contains(namespace, ".") {
		return logStreamPrefix + namespace
	}
	return logStreamPrefixEncoded + logB32.EncodeToString([]byte(namespace))
}

func logSubject(namespace string, id durable.ID) string {
	return logSubjectPrefix + base64.RawURLEncoding.EncodeToString([]byte(namespace)) + "." + id.String()
}

// Log appends objects' write batches to JetStream and reads them back.
type Log struct {
	// PartBytes is the largest record body of one message: a batch whose record is longer
	// is split into parts. Zero, or more than the connection's max_payload minus 64 KiB (for
	// the headers), means that limit. Set it before the first Append.
	PartBytes int

	js       jetstream.JetStream
	nc       *nats.Conn
	replicas int

	mu      sync.Mutex
	streams map[string]jetstream.Stream
	snaps   map[string]jetstream.ObjectStore
}

// NewLog returns the log of node's cluster; its streams have node.Replicas() replicas.
func NewLog(node *cluster.Node) *Log {
	return &Log{js: node.JetStream(), nc: node.Conn(), replicas: max(node.Replicas(), 1), streams: map[string]jetstream.Stream{}, snaps: map[string]jetstream.ObjectStore{}}
}

// stream returns namespace's log stream, creating it when needed.
func (l *Log) stream(ctx context.Context, namespace string) (jetstream.Stream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.streams[namespace]; s != nil {
		return s, nil
	}
	s, err := retryJS(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        LogStreamName(namespace),
			Description: "Verge Durable Object write batches of namespace " + namespace,
			Subjects:    []string{logSubjectPrefix + base64.RawURLEncoding.EncodeToString([]byte(namespace)) + ".*"},
			Storage:     jetstream.FileStorage,
			Replicas:    l.replicas,
			Discard:     jetstream.DiscardNew,
			MaxMsgSize:  -1,
			Metadata:    map[string]string{"verge_namespace": namespace},
		})
	})
	if err != nil {
		return nil, classify("open object log", err)
	}
	l.streams[namespace] = s
	return s, nil
}

// encodeDelta is a record's body: page size, database pages, page count, then each page's
// number and content.
func encodeDelta(d WALDelta) []byte {
	b := make([]byte, 12, 12+len(d.Pages)*(4+d.PageSize))
	binary.BigEndian.PutUint32(b[0:], uint32(d.PageSize))
	binary.BigEndian.PutUint32(b[4:], d.DBPages)
	binary.BigEndian.PutUint32(b[8:], uint32(len(d.Pages)))
	for _, p := range d.Pages {
		b = binary.BigEndian.AppendUint32(b, p.No)
		b = append(b, p.Data...)
	}
	return b
}

func decodeDelta(b []byte) (WALDelta, error) {
	if len(b) == 0 {
		return WALDelta{}, nil
	}
	if len(b) < 12 {
		return WALDelta{}, errors.New("durable: object log record too short")
	}
	d := WALDelta{PageSize: int(binary.BigEndian.Uint32(b[0:])), DBPages: binary.BigEndian.Uint32(b[4:])}
	n := int(binary.BigEndian.Uint32(b[8:]))
	b = b[12:]
	if d.PageSize < 512 || d.PageSize > 65536 || n < 0 || len(b) != n*(4+d.PageSize) {
		return WALDelta{}, fmt.Errorf("durable: object log record of %d pages of %d bytes has %d bytes", n, d.PageSize, len(b))
	}
	for range n {
		d.Pages = append(d.Pages, Page{No: binary.BigEndian.Uint32(b), Data: b[4 : 4+d.PageSize]})
		b = b[4+d.PageSize:]
	}
	return d, nil
}

// Append appends a batch of object id under lease token; expect is the sequence of the
// object's previous record (0 when it has none). A batch longer than PartBytes is appended
// as several parts, one after the other, each naming the previous one's sequence; Append
// returns once the last one is acknowledged. It returns the sequence of the (last part of
// the) record, which the next Append expects. It fails with ErrFenced when another record
// was appended since, before any part or between two parts (the parts already stored are a
// torn batch that replay skips).
func (l *Log) Append(ctx context.Context, namespace string, id durable.ID, token, expect uint64, d WALDelta) (uint64, error) {
	s, err := l.stream(ctx, namespace)
	if err != nil {
		return 0, err
	}
	data := encodeDelta(d)
	limit := l.partLimit()
	if len(data) <= limit {
		return l.publish(ctx, s, namespace, id, token, expect, kindBatch, "", data)
	}
	parts := splitRecord(data, limit)
	if len(parts) > maxRecordParts {
		return 0, fmt.Errorf("durable: write batch of %d bytes needs %d log records, more than %d: %w", len(data), len(parts), maxRecordParts, durable.ErrInvalid)
	}
	for i, p := range parts {
		if expect, err = l.publish(ctx, s, namespace, id, token, expect, kindBatch, formatPart(i+1, len(parts)), p); err != nil {
			return 0, err
		}
	}
	return expect, nil
}

// splitRecord cuts a record into parts of at most limit bytes.
func splitRecord(data []byte, limit int) [][]byte {
	parts := make([][]byte, 0, (len(data)+limit-1)/limit)
	for len(data) > 0 {
		k := min(limit, len(data))
		parts = append(parts, data[:k])
		data = data[k:]
	}
	return parts
}

// partLimit is the largest body of one log message.
func (l *Log) partLimit() int {
	limit := int(max(l.nc.MaxPayload()-logRecordRoom, 4096))
	if l.PartBytes > 0 && l.PartBytes < limit {
		return l.PartBytes
	}
	return limit
}

// formatPart and parsePart write and read the Verge-Do-Part header.
func formatPart(i, n int) string { return strconv.Itoa(i) + "/" + strconv.Itoa(n) }

func parsePart(h string) (i, n int, err error) {
	a, b, ok := strings.Cut(h, "/")
	if ok {
		i, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || n < 2 || n > maxRecordParts || i < 1 || i > n || a != strconv.Itoa(i) || b != strconv.Itoa(n) {
		return 0, 0, fmt.Errorf("durable: object log record with bad part %q", h)
	}
	return i, n, nil
}

// Takeover appends the record with which a new owner (lease token) fences every earlier one;
// expect is the sequence of the last record it replayed.
func (l *Log) Takeover(ctx context.Context, namespace string, id durable.ID, token, expect uint64) (uint64, error) {
	s, err := l.stream(ctx, namespace)
	if err != nil {
		return 0, err
	}
	return l.publish(ctx, s, namespace, id, token, expect, kindTakeover, "", nil)
}

// publish appends one message to object id's subject of stream s if the subject's last
// message is at sequence expect, and returns its sequence.
func (l *Log) publish(ctx context.Context, s jetstream.Stream, namespace string, id durable.ID, token, expect uint64, kind, part string, data []byte) (uint64, error) {
	m := nats.NewMsg(logSubject(namespace, id))
	m.Header.Set(hdrLease, strconv.FormatUint(token, 10))
	m.Header.Set(hdrKind, kind)
	if part != "" {
		m.Header.Set(hdrPart, part)
	}
	m.Data = data
	// The message ID names this append (the owner's lease and the position it appends at):
	// an attempt whose acknowledgement was lost is sent again, and JetStream, which checks
	// message IDs before the expected sequence, answers the repeat with the stored
	// message's sequence instead of storing it twice or refusing it as out of sequence.
	m.Header.Set(jetstream.MsgIDHeader, id.String()+":"+strconv.FormatUint(token, 10)+":"+strconv.FormatUint(expect, 10))
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(s.CachedInfo().Config.Name), jetstream.WithExpectLastSequencePerSubject(expect)}
	sent := false
	wrongSeq := 0 // "wrong last sequence" answers so far
	for {
		actx, acancel := context.WithTimeout(ctx, appendAttempt)
		ack, err := l.js.PublishMsg(actx, m, opts...)
		acancel()
		switch {
		case err == nil:
			return ack.Sequence, nil
		case isWrongLastSeq(err):
			if sent {
				// An earlier attempt may have been stored while its repeat reached a leader
				// that had not applied it yet (so the message ID check missed it): if the
				// subject's last message is this append, it was stored.
				if last, lerr := s.GetLastMsgForSubject(ctx, m.Subject); lerr == nil && last.Header.Get(jetstream.MsgIDHeader) == m.Header.Get(jetstream.MsgIDHeader) {
					return last.Sequence, nil
				}
			}
			// A stream leader elected a moment ago may not have applied the entries it
			// committed yet, and checks the expected sequence against its stale store (seen
			// under the race detector: an owner's own next part refused). Such a leader
			// catches up within a moment; another owner's append never goes away. Ask again
			// a few times, under the same message ID, before calling the log fenced.
			if wrongSeq++; wrongSeq > wrongSeqRetries {
				return 0, fmt.Errorf("durable: append to the log of %s: %w (%w)", id, ErrFenced, err)
			}
		case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
			// Not received (the stream has no leader yet): try again.
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			// Perhaps stored: try again under the same message ID.
			sent = true
		default:
			// Perhaps sent (a connection lost under it): not repeated, outcome unknown.
			return 0, fmt.Errorf("durable: append to the log of %s: %w (%w)", id, errAppendUnknown, classify("append to object log", err))
		}
		if ctx.Err() != nil {
			if sent {
				return 0, fmt.Errorf("durable: append to the log of %s: %w (%w)", id, errAppendUnknown, classify("append to object log", err))
			}
			return 0, classify("append to object log", err)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// wrongSeqRetries is how many "wrong last sequence" answers an append takes (50ms apart)
// before it reports the log fenced: a new stream leader catching up on entries it had not
// applied answers so for a moment.
const wrongSeqRetries = 20

// appendAttempt bounds one attempt of an append: a stream electing a leader answers
// nothing, and the next attempt may reach its new leader.
const appendAttempt = time.Second

// errAppendUnknown is wrapped by the errors of appends that may have been stored.
var errAppendUnknown = errors.New("outcome unknown")

// Replay calls apply with each batch of object id recorded after sequence after, in order,
// and returns the sequence of the object's last message (takeovers and the parts of a torn
// batch included), which is what the next Append or Takeover expects; after when there is
// none. A batch split into parts is applied once its last part is read; parts not followed
// by the rest of their batch (an owner that died between two parts) are skipped. after
// must be the sequence of a whole record (a snapshot's), never of a part before the last.
func (l *Log) Replay(ctx context.Context, namespace string, id durable.ID, after uint64, apply func(WALDelta) error) (uint64, error) {
	s, err := l.stream(ctx, namespace)
	if err != nil {
		return after, err
	}
	subj := logSubject(namespace, id)
	last := after
	var r partReader
	for {
		// A stream electing a leader (its last one died with the object's owner) answers
		// "temporarily unavailable" or nothing: read again, within ctx, rather than fail
		// the takeover.
		end := false
		m, err := retryJS(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			m, err := s.GetMsg(ctx, last+1, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				end = true
				return nil, nil
			}
			return m, err
		})
		if end {
			return last, nil
		}
		if err != nil {
			return last, classify("read object log", err)
		}
		rec, err := r.add(m.Header.Get(hdrKind), m.Header.Get(hdrPart), m.Data)
		if err != nil {
			return last, err
		}
		if rec != nil {
			d, err := decodeDelta(rec)
			if err != nil {
				return last, err
			}
			if err := apply(d); err != nil {
				return last, err
			}
		}
		last = m.Sequence
	}
}

// partReader joins the parts of batch records read in log order.
type partReader struct {
	buf  []byte // the parts read so far of the current batch; nil when none
	have int    // how many
	n    int    // of how many
}

// add takes the next message of a subject and returns a whole batch record once it has
// one: the message itself when it is not split, the joined parts after the last one. A
// message that does not continue the current batch (a takeover, a whole record, a part 1,
// a part out of order) drops the parts read so far: they are a torn batch.
func (r *partReader) add(kind, part string, data []byte) ([]byte, error) {
	if kind != kindBatch {
		r.buf, r.have, r.n = nil, 0, 0
		return nil, nil
	}
	if part == "" {
		r.buf, r.have, r.n = nil, 0, 0
		if data == nil {
			data = []byte{}
		}
		return data, nil
	}
	i, n, err := parsePart(part)
	if err != nil {
		return nil, err
	}
	switch {
	case i == 1:
		r.buf, r.have, r.n = append([]byte(nil), data...), 1, n
	case r.buf != nil && i == r.have+1 && n == r.n:
		r.buf = append(r.buf, data...)
		r.have++
	default:
		r.buf, r.have, r.n = nil, 0, 0
		return nil, nil
	}
	if r.have < r.n {
		return nil, nil
	}
	rec := r.buf
	r.buf, r.have, r.n = nil, 0, 0
	return rec, nil
}
