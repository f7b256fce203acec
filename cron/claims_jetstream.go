package cron

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
)

// ClaimsBucket is the JetStream key-value bucket of the cluster's fired slots: one key per
// trigger (Key), its value the latest fired slot's Unix time and the node that claimed it.
const ClaimsBucket = "verge_cron"

// maxClaimAttempts bounds the compare-and-set rounds of one claim.
const maxClaimAttempts = 8

// JetStreamClaims records fired slots in the cluster's ClaimsBucket with compare-and-set on
// the key's revision, so that of the nodes that claim one slot exactly one wins.
type JetStreamClaims struct {
	node *cluster.Node

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewJetStreamClaims returns claims kept in the cluster of node; the bucket is created on
// first use.
func NewJetStreamClaims(node *cluster.Node) *JetStreamClaims { return &JetStreamClaims{node: node} }

var _ Claims = (*JetStreamClaims)(nil)

func (j *JetStreamClaims) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.kv != nil {
		return j.kv, nil
	}
	js := j.node.JetStream()
	kv, err := js.KeyValue(ctx, ClaimsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       ClaimsBucket,
			Description:  "Verge cron triggers: the latest fired slot of each trigger",
			History:      1,
			MaxValueSize: 1024,
			Replicas:     max(j.node.Replicas(), 1),
			Storage:      jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, ClaimsBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cron claims bucket: %w", err)
	}
	j.kv = kv
	return kv, nil
}

// parseClaim decodes "unix node".
func parseClaim(b []byte) (int64, string, error) {
	slot, node, _ := strings.Cut(string(b), " ")
	v, err := strconv.ParseInt(slot, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("cron claim %q: %w", b, err)
	}
	return v, node, nil
}

// Claim records slot unless an equal or later one is recorded. A write whose answer was
// lost is recognized by the node's name in the value on the next round.
func (j *JetStreamClaims) Claim(ctx context.Context, key string, slot time.Time) (bool, error) {
	kv, err := j.bucket(ctx)
	if err != nil {
		return false, err
	}
	me := j.node.Name()
	want := slot.Unix()
	value := []byte(strconv.FormatInt(want, 10) + " " + me)
	wrote := false
	var lastErr error
	for range maxClaimAttempts {
		if ctx.Err() != nil {
			break
		}
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			lastErr = err
			continue
		default:
			last, node, err := parseClaim(e.Value())
			if err != nil {
				return false, err
			}
			if last >= want {
				// Ours only when this call wrote it and the answer was lost.
				return wrote && last == want && node == me, nil
			}
			rev = e.Revision()
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, value)
		} else {
			_, err = kv.Update(ctx, key, value, rev)
		}
		if err == nil {
			return true, nil
		}
		// Lost a race, or the answer: read again.
		wrote, lastErr = true, err
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return false, fmt.Errorf("cron claim %s: %w", key, lastErr)
}

// Last returns key's recorded slot.
func (j *JetStreamClaims) Last(ctx context.Context, key string) (time.Time, error) {
	kv, err := j.bucket(ctx)
	if err != nil {
		return time.Time{}, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	v, _, err := parseClaim(e.Value())
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(v, 0).UTC(), nil
}
