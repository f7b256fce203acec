package clustered

import (
	"context"
	"errors"
	"time"

	"github.com/verge-edge/verge/durable"
)

// JetStream API calls that create or open Verge's buckets and streams are made in bounded
// attempts: a request the meta leader never answers (none elected yet, or the cluster
// still forming on a loaded machine) would otherwise hold its caller, and every caller
// queued behind it, until the caller's whole deadline.
const (
	// jsAttempt bounds one attempt.
	jsAttempt = 5 * time.Second
	// jsRetryPause separates two attempts.
	jsRetryPause = 200 * time.Millisecond
	// jsOpenTimeout bounds opening when the caller's context has no deadline.
	jsOpenTimeout = 30 * time.Second
)

// retryJS runs op in attempts of at most jsAttempt until it succeeds, fails with
// durable.ErrInvalid (a configuration that waiting does not mend), or ctx ends; then it
// returns op's last result.
func retryJS[T any](ctx context.Context, op func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, jsOpenTimeout)
		defer cancel()
	}
	for {
		actx, cancel := context.WithTimeout(ctx, jsAttempt)
		v, err := op(actx)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, durable.ErrInvalid) {
			return v, err
		}
		t := time.NewTimer(jsRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}
