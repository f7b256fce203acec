package fault

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
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

// A timeout met while writing is a write timeout (issue 12: a stalled write to a client was
// logged as a read timeout).
func TestClassifyWriteTimeout(t *testing.T) {
	writeErr := &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
	readErr := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name string
		got  *Error
		want Kind
	}{
		{"socket write", Classify(Downstream, writeErr), WriteTimeout},
		{"socket read", Classify(Downstream, readErr), ReadTimeout},
		{"write without op", ClassifyWrite(Downstream, os.ErrDeadlineExceeded), WriteTimeout},
		{"write, wrapped", ClassifyWrite(Downstream, fmt.Errorf("flush: %w", writeErr)), WriteTimeout},
		{"write, reset", ClassifyWrite(Downstream, syscall.EPIPE), ConnectionClosed},
		{"classified stays", ClassifyWrite(Upstream, &Error{Source: Upstream, Kind: ReadTimeout}), ReadTimeout},
	} {
		if tc.got.Kind != tc.want {
			t.Errorf("%s: got kind %v, want %v", tc.name, tc.got.Kind, tc.want)
		}
	}
	if got := ClassifyWrite(Downstream, writeErr).Error(); !strings.HasPrefix(got, "downstream write timeout") {
		t.Errorf("got %q, want it to say downstream write timeout", got)
	}
}

// timeoutErr is a timeout error whose type cannot be compared with ==.
type timeoutErr struct{ ops []string }

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// ClassifyWrite must not compare errors with ==: an error of an uncomparable type made it
// panic.
func TestClassifyWriteUncomparable(t *testing.T) {
	if got := ClassifyWrite(Downstream, timeoutErr{ops: []string{"write"}}).Kind; got != WriteTimeout {
		t.Errorf("got kind %v, want %v", got, WriteTimeout)
	}
}
