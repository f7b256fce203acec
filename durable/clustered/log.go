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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/durable"
)

// The write-batch log: one JetStream stream per namespace, one subject per object, one
// message per committed batch (its WAL pages) or takeover (no pages). Every append names the
// sequence of the object's previous record (expected last subject sequence), so an owner
// that lost its object to a takeover cannot append any more: JetStream refuses, not a clock.
const (
	logStreamPrefix        = "verge_do_log_"
	logStreamPrefixEncoded = "verge_do_log-"
	logSubjectPrefix       = cluster.SubjectPrefix + "dolog."
	hdrLease               = "Verge-Do-Lease"
	hdrKind                = "Verge-Do-Kind"
	kindBatch              = "batch"
	kindTakeover           = "takeover"
	// logRecordRoom is what a record must leave of max_payload for its headers.
	logRecordRoom = 64 << 10
)

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
	s, err := l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        LogStreamName(namespace),
		Description: "Verge Durable Object write batches of namespace " + namespace,
		Subjects:    []string{logSubjectPrefix + base64.RawURLEncoding.EncodeToString([]byte(namespace)) + ".*"},
		Storage:     jetstream.FileStorage,
		Replicas:    l.replicas,
		Discard:     jetstream.DiscardNew,
		MaxMsgSize:  -1,
		Metadata:    map[string]string{"verge_namespace": namespace},
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
// object's previous record (0 when it has none). It returns the record's sequence, which the
// next Append expects. It fails with ErrFenced when another record was appended since.
func (l *Log) Append(ctx context.Context, namespace string, id durable.ID, token, expect uint64, d WALDelta) (uint64, error) {
	return l.append(ctx, namespace, id, token, expect, kindBatch, encodeDelta(d))
}

// Takeover appends the record with which a new owner (lease token) fences every earlier one;
// expect is the sequence of the last record it replayed.
func (l *Log) Takeover(ctx context.Context, namespace string, id durable.ID, token, expect uint64) (uint64, error) {
	return l.append(ctx, namespace, id, token, expect, kindTakeover, nil)
}

func (l *Log) append(ctx context.Context, namespace string, id durable.ID, token, expect uint64, kind string, data []byte) (uint64, error) {
	if limit := l.nc.MaxPayload() - logRecordRoom; int64(len(data)) > limit {
		return 0, fmt.Errorf("durable: write batch of %d bytes exceeds the %d bytes of one log record: %w", len(data), limit, durable.ErrInvalid)
	}
	s, err := l.stream(ctx, namespace)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(logSubject(namespace, id))
	m.Header.Set(hdrLease, strconv.FormatUint(token, 10))
	m.Header.Set(hdrKind, kind)
	m.Data = data
	ack, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectStream(s.CachedInfo().Config.Name), jetstream.WithExpectLastSequencePerSubject(expect))
	if isWrongLastSeq(err) {
		return 0, fmt.Errorf("durable: append to the log of %s: %w (%w)", id, ErrFenced, err)
	}
	if err != nil {
		return 0, classify("append to object log", err)
	}
	return ack.Sequence, nil
}

// Replay calls apply with each batch of object id recorded after sequence after, in order,
// and returns the sequence of the object's last record (takeovers included), which is what
// the next Append or Takeover expects; after when there is none.
func (l *Log) Replay(ctx context.Context, namespace string, id durable.ID, after uint64, apply func(WALDelta) error) (uint64, error) {
	s, err := l.stream(ctx, namespace)
	if err != nil {
		return after, err
	}
	subj := logSubject(namespace, id)
	last := after
	for {
		m, err := s.GetMsg(ctx, last+1, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return last, nil
		}
		if err != nil {
			return last, classify("read object log", err)
		}
		if m.Header.Get(hdrKind) == kindBatch {
			d, err := decodeDelta(m.Data)
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
