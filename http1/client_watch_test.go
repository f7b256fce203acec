package http1

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// One context registration serves many round trips with the same context; a context that
// ends while the connection is idle does not break the next round trip; a context canceled
// during a round trip still interrupts it.
func TestClientContextWatchAcrossRoundTrips(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	}))
	defer ts.Close()
	defer close(release)
	cc := newClient(t, ts.Listener.Addr().String(), nil)

	shared, cancelShared := context.WithCancel(context.Background())
	for i := 0; i < 3; i++ {
		resp, err := cc.RoundTrip(shared, get("GET", "/"))
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if got := readBody(t, resp); got != "ok" {
			t.Fatalf("round trip %d: body %q", i, got)
		}
	}
	cancelShared() // fires while the connection is idle
	time.Sleep(10 * time.Millisecond)

	other, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	resp, err := cc.RoundTrip(other, get("GET", "/"))
	if err != nil {
		t.Fatalf("round trip after an idle cancellation: %v", err)
	}
	if got := readBody(t, resp); got != "ok" {
		t.Fatalf("body %q", got)
	}

	go func() { time.Sleep(50 * time.Millisecond); cancelOther() }()
	_, err = cc.RoundTrip(other, get("GET", "/slow"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Canceled {
		t.Fatalf("canceled mid-request: got %v, want a Canceled fault", err)
	}
}

// Each round trip with its own context, the previous one canceled as the next starts (an
// HTTP/2 downstream stream ends as the pooled upstream connection serves the next stream):
// the late cancellation must not interrupt the new round trip.
func TestClientPreviousContextCanceledDuringNextRoundTrip(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}})
	cc := newClient(t, addr, nil)
	prev, cancelPrev := context.WithCancel(context.Background())
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		resp, err := cc.RoundTrip(prev, get("GET", "/"))
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if got := readBody(t, resp); got != "ok" {
			t.Fatalf("round trip %d: body %q", i, got)
		}
		next, cancelNext := context.WithCancel(context.Background())
		go cancelPrev()
		prev, cancelPrev = next, cancelNext
	}
	cancelPrev()
}
