package fault

import (
	"io"
	"syscall"
	"testing"
)

func TestStatusCodeClientGone(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want int
	}{
		{Classify(Downstream, io.ErrUnexpectedEOF), 499},
		{Classify(Downstream, syscall.ECONNRESET), 499},
		{Classify(Downstream, syscall.EPIPE), 499},
		{&Error{Source: Downstream, Kind: Canceled}, 499},
		{Classify(Upstream, io.ErrUnexpectedEOF), 502},
		{Classify(Upstream, syscall.ECONNRESET), 502},
		{&Error{Source: Upstream, Kind: ReadTimeout}, 504},
		{&Error{Source: Downstream, Kind: ReadTimeout}, 408},
	} {
		if got := tc.err.StatusCode(); got != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, got, tc.want)
		}
	}
}
