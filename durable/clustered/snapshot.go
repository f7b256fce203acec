package clustered

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/durable"
)

// Snapshots: each namespace has a JetStream object store; object <id hex> is the database
// of that object as of log sequence metaSeq (its metadata). The owner keeps a shadow file
// to which it applies every batch it ships, so the shadow is a consistent copy at any point
// between batches, and uploading it needs nothing from SQLite.
const (
	snapStorePrefix        = "verge_do_snap_"
	snapStorePrefixEncoded = "verge_do_snap-"
	metaSeq                = "verge_log_seq"
	// DefaultSnapshotEvery is how many batches an owner ships between snapshots.
	DefaultSnapshotEvery = 256
)

// SnapshotStoreName returns the object store of namespace's snapshots.
func SnapshotStoreName(namespace string) string {
	if !strings.Contains(namespace, ".") {
		return snapStorePrefix + namespace
	}
	return snapStorePrefixEncoded + logB32.EncodeToString([]byte(namespace))
}

func (l *Log) snapshots(ctx context.Context, namespace string) (jetstream.ObjectStore, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.snaps[namespace]; s != nil {
		return s, nil
	}
	s, err := retryJS(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return l.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      SnapshotStoreName(namespace),
			Description: "Verge Durable Object snapshots of namespace " + namespace,
			Storage:     jetstream.FileStorage,
			Replicas:    l.replicas,
			Metadata:    map[string]string{"verge_namespace": namespace},
		})
	})
	if err != nil {
		return nil, classify("open snapshot store", err)
	}
	l.snaps[namespace] = s
	return s, nil
}

// PutSnapshot uploads the database file at path as object id's snapshot at log sequence
// seq, then purges the object's log records before seq (the record at seq stays: it is
// what the next append expects). seq must be the sequence of a whole record (the last part
// of a batch split into parts), so that no purge falls between the parts of a batch. A
// stored snapshot at seq or later is kept (nothing is done).
func (l *Log) PutSnapshot(ctx context.Context, namespace string, id durable.ID, seq uint64, path string) error {
	s, err := l.snapshots(ctx, namespace)
	if err != nil {
		return err
	}
	switch info, err := snapshotInfo(ctx, s, id.String()); {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		return classify("read snapshot", err)
	default:
		if have, err := strconv.ParseUint(info.Metadata[metaSeq], 10, 64); err == nil && have >= seq {
			return nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("durable: snapshot: %w", err)
	}
	defer f.Close()
	meta := jetstream.ObjectMeta{Name: id.String(), Metadata: map[string]string{metaSeq: strconv.FormatUint(seq, 10)}}
	if _, err := s.Put(ctx, meta, f); err != nil {
		return classify("put snapshot", err)
	}
	st, err := l.stream(ctx, namespace)
	if err != nil {
		return err
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(logSubject(namespace, id)), jetstream.WithPurgeSequence(seq)); err != nil {
		return classify("purge object log", err)
	}
	return nil
}

// GetSnapshot writes object id's latest snapshot to path and returns its log sequence; 0
// (and no file) when there is none.
func (l *Log) GetSnapshot(ctx context.Context, namespace string, id durable.ID, path string) (uint64, error) {
	s, err := l.snapshots(ctx, namespace)
	if err != nil {
		return 0, err
	}
	info, err := snapshotInfo(ctx, s, id.String())
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, classify("read snapshot", err)
	}
	seq, err := strconv.ParseUint(info.Metadata[metaSeq], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("durable: snapshot of %s without a log sequence", id)
	}
	if err := s.GetFile(ctx, id.String(), path); err != nil {
		return 0, classify("get snapshot", err)
	}
	return seq, nil
}

// snapshotInfo reads the info of snapshot name. Its metadata is read with a direct get,
// which the replicas of a store created a moment ago may not answer yet (no responders):
// that is tried again, for about 1.5 s at most, within ctx.
func snapshotInfo(ctx context.Context, s jetstream.ObjectStore, name string) (*jetstream.ObjectInfo, error) {
	for wait := 25 * time.Millisecond; ; wait *= 2 {
		info, err := s.GetInfo(ctx, name)
		if !errors.Is(err, nats.ErrNoResponders) || wait > time.Second {
			return info, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}
