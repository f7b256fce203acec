package proxy

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

var testPeer = &upstream.Peer{Address: "127.0.0.1:9"}

func TestPhaseOrder(t *testing.T) {
	var got []string
	p := &Proxy[recordCtx]{
		Phases: &recorder{peer: testPeer, logged: &got},
		Transport: funcTransport(func(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
			return okResponse("hello"), nil
		}),
	}
	ex := newExchange("POST", "/x", "body")
	p.ServeExchange(ex)
	// The request body streams during RoundTrip; this fake transport never reads it, so the
	// request-body phase does not reach its end here.
	want := []string{"early", "request", "peer", "upstream_request", "upstream_response", "response", "response_body_eos", "logging"}
	if !slices.Equal(got, want) {
		t.Fatalf("phase order:\n got %v\nwant %v", got, want)
	}
	if ex.resp.Status != 200 || ex.body.String() != "hello" || !ex.finished {
		t.Fatalf("got status %d body %q finished %v", ex.resp.Status, ex.body.String(), ex.finished)
	}
}

func TestRequestPhaseAnswers(t *testing.T) {
	var got []string
	called := false
	p := &Proxy[recordCtx]{
		Phases: &recorder{peer: testPeer, handle: true, logged: &got},
		Transport: funcTransport(func(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
			called = true
			return okResponse(""), nil
		}),
	}
	ex := newExchange("GET", "/", "")
	p.ServeExchange(ex)
	if called {
		t.Fatal("transport called for a request the Request phase answered")
	}
	if want := []string{"early", "request", "logging"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if ex.resp.Status != 204 {
		t.Fatalf("status %d, want 204", ex.resp.Status)
	}
}

func TestErrorStatuses(t *testing.T) {
	cases := []struct {
		name   string
		method string
		err    error
		want   int
	}{
		{"refused", "GET", &fault.Error{Source: fault.Upstream, Kind: fault.ConnectRefused}, 502},
		{"connect timeout", "GET", &fault.Error{Source: fault.Upstream, Kind: fault.ConnectTimeout}, 504},
		{"read timeout", "GET", &fault.Error{Source: fault.Upstream, Kind: fault.ReadTimeout}, 504},
		{"tls", "GET", &fault.Error{Source: fault.Upstream, Kind: fault.TLSHandshake}, 502},
		{"plain error", "GET", errors.New("boom"), 502},
		{"connect disabled", "CONNECT", nil, 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logged []string
			var lerr *fault.Error
			p := &Proxy[recordCtx]{
				Phases:     &recorder{peer: testPeer, logged: &logged, logErr: &lerr},
				MaxRetries: -1,
				Transport: funcTransport(func(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
					if tc.err == nil {
						return okResponse("x"), nil
					}
					return nil, tc.err
				}),
			}
			ex := newExchange(tc.method, "/", "")
			p.ServeExchange(ex)
			if ex.resp.Status != tc.want {
				t.Fatalf("status %d, want %d", ex.resp.Status, tc.want)
			}
			if lerr == nil {
				t.Fatal("Logging got no error")
			}
			if !strings.HasPrefix(ex.body.String(), strings.TrimSpace(itoa(tc.want))) {
				t.Fatalf("error body %q does not start with the status", ex.body.String())
			}
		})
	}
}

func itoa(n int) string {
	return string(rune('0'+n/100)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}

func TestRetries(t *testing.T) {
	refused := &fault.Error{Source: fault.Upstream, Kind: fault.ConnectRefused, Retry: true}
	closedFresh := &fault.Error{Source: fault.Upstream, Kind: fault.ConnectionClosed, Retry: true}
	closedReused := &fault.Error{Source: fault.Upstream, Kind: fault.ConnectionClosed, Retry: true, Reused: true}
	unprocessed := &fault.Error{Source: fault.Upstream, Kind: fault.ConnectionClosed, Retry: true, Reused: true, Unprocessed: true}
	cases := []struct {
		name       string
		method     string
		body       string
		readBody   bool
		errs       []*fault.Error
		maxRetries int
		wantCalls  int
		wantStatus int
		forceRetry bool
	}{
		{"connect failure retried", "POST", "", false, []*fault.Error{refused}, 0, 2, 200, false},
		{"idempotent retried", "GET", "", false, []*fault.Error{closedFresh}, 0, 2, 200, false},
		{"non-idempotent fresh conn not retried", "POST", "", false, []*fault.Error{closedFresh}, 0, 1, 502, false},
		// RFC 9112 section 9.3.1: the origin may have received it (issue 12: a POST was sent
		// twice when the origin closed the reused connection after reading it).
		{"non-idempotent reused conn not retried", "POST", "", false, []*fault.Error{closedReused}, 0, 1, 502, false},
		{"non-idempotent reused conn, PATCH", "PATCH", "", false, []*fault.Error{closedReused}, 0, 1, 502, false},
		{"idempotent reused conn retried", "DELETE", "", false, []*fault.Error{closedReused}, 0, 2, 200, false},
		{"non-idempotent, known unprocessed (h2 GOAWAY), retried", "POST", "", false, []*fault.Error{unprocessed}, 0, 2, 200, false},
		{"phase asks for a non-idempotent retry", "POST", "", false, []*fault.Error{closedReused}, 0, 2, 200, true},
		{"body already sent not retried", "PUT", "payload", true, []*fault.Error{closedReused}, 0, 1, 502, false},
		{"retry budget", "GET", "", false, []*fault.Error{refused, refused, refused, refused}, 2, 3, 502, false},
		{"retries disabled", "GET", "", false, []*fault.Error{refused}, -1, 1, 502, false},
		{"not marked retryable", "GET", "", false, []*fault.Error{{Source: fault.Upstream, Kind: fault.ConnectRefused}}, 0, 1, 502, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logged []string
			calls := 0
			p := &Proxy[recordCtx]{
				Phases:     &recorder{peer: testPeer, logged: &logged, forceRetry: tc.forceRetry},
				MaxRetries: tc.maxRetries,
				Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
					calls++
					if tc.readBody && r.Body != nil {
						io.ReadAll(r.Body)
					}
					if calls <= len(tc.errs) {
						e := *tc.errs[calls-1]
						return nil, &e
					}
					return okResponse("ok"), nil
				}),
			}
			ex := newExchange(tc.method, "/", tc.body)
			p.ServeExchange(ex)
			if calls != tc.wantCalls {
				t.Errorf("transport calls %d, want %d", calls, tc.wantCalls)
			}
			if ex.resp.Status != tc.wantStatus {
				t.Errorf("status %d, want %d", ex.resp.Status, tc.wantStatus)
			}
		})
	}
}

func TestHopByHopAndForwarding(t *testing.T) {
	var upLine string
	var upHeader message.Header
	p := &Proxy[recordCtx]{
		Phases: &recorder{peer: testPeer, logged: new([]string)},
		Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
			upLine = r.Method + " " + r.Target + " " + r.Authority
			upHeader = r.Header.Clone()
			resp := okResponse("x")
			resp.Header.Add("Connection", "X-Up-Private, close")
			resp.Header.Add("X-Up-Private", "secret")
			resp.Header.Add("Keep-Alive", "timeout=5")
			resp.Header.Add("X-Kept", "1")
			return resp, nil
		}),
	}
	ex := newExchange("GET", "/p?q=1", "")
	h := &ex.req.Header
	h.Add("Connection", "keep-alive, X-Private")
	h.Add("X-Private", "drop me")
	h.Add("Keep-Alive", "timeout=5")
	h.Add("Proxy-Connection", "keep-alive")
	h.Add("TE", "trailers, deflate")
	h.Add("Upgrade", "h2c")
	h.Add("X-Forwarded-For", "10.9.9.9")
	h.Add("X-Custom", "Kept")
	p.ServeExchange(ex)

	for _, name := range []string{"Connection", "X-Private", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if upHeader.Has(name) {
			t.Errorf("upstream request still has hop-by-hop %s", name)
		}
	}
	checks := map[string]string{
		"TE":                "trailers",
		"X-Custom":          "Kept",
		"X-Forwarded-For":   "192.0.2.7",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "example.test",
		"Via":               "1.1 verge",
	}
	for k, want := range checks {
		if got := upHeader.Get(k); got != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	if upLine != "GET /p?q=1 example.test" {
		t.Errorf("upstream request line %q", upLine)
	}
	rh := &ex.resp.Header
	for _, name := range []string{"Connection", "X-Up-Private", "Keep-Alive"} {
		if rh.Has(name) {
			t.Errorf("response still has hop-by-hop %s", name)
		}
	}
	if rh.Get("X-Kept") != "1" || rh.Get("Via") != "1.1 verge" {
		t.Errorf("response header: X-Kept %q Via %q", rh.Get("X-Kept"), rh.Get("Via"))
	}
}

func TestTrustForwardedAppends(t *testing.T) {
	var xff string
	p := &Proxy[recordCtx]{
		Phases:         &recorder{peer: testPeer, logged: new([]string)},
		TrustForwarded: true,
		Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
			xff = strings.Clone(r.Header.Get("X-Forwarded-For"))
			return okResponse(""), nil
		}),
	}
	ex := newExchange("GET", "/", "")
	ex.req.Header.Add("X-Forwarded-For", "10.0.0.1")
	ex.req.Header.Add("X-Forwarded-For", "10.0.0.2")
	p.ServeExchange(ex)
	if want := "10.0.0.1, 10.0.0.2, 192.0.2.7"; xff != want {
		t.Fatalf("X-Forwarded-For %q, want %q", xff, want)
	}
}

type upperCtx struct{}

type upperFilter struct{ Base[upperCtx] }

func (upperFilter) UpstreamPeer(*Session, *upperCtx) (*upstream.Peer, error) { return testPeer, nil }
func (upperFilter) RequestBody(_ *Session, b []byte, _ bool, _ *upperCtx) ([]byte, error) {
	for i := range b {
		if 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return b, nil
}
func (upperFilter) ResponseBody(_ *Session, b []byte, eos bool, _ *upperCtx) ([]byte, error) {
	if eos {
		return append(b, "!"...), nil
	}
	return b, nil
}

func TestBodyFiltersAndTrailers(t *testing.T) {
	var sent string
	p := &Proxy[upperCtx]{
		Phases: upperFilter{},
		Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
			b, _ := io.ReadAll(r.Body)
			sent = string(b)
			resp := okResponse("reply")
			resp.ContentLength = -1
			resp.Trailer.Add("Grpc-Status", "0")
			return resp, nil
		}),
	}
	ex := newExchange("POST", "/", "shout this")
	p.ServeExchange(ex)
	if sent != "SHOUT THIS" {
		t.Errorf("upstream got body %q", sent)
	}
	if ex.body.String() != "reply!" {
		t.Errorf("client got body %q", ex.body.String())
	}
	if ex.trailer.Get("Grpc-Status") != "0" {
		t.Errorf("trailer not forwarded: %v", ex.trailer.Fields())
	}
}

type nilPeer struct{ Base[struct{}] }

func (nilPeer) UpstreamPeer(*Session, *struct{}) (*upstream.Peer, error) { return nil, nil }

func TestNoPeerIs503(t *testing.T) {
	p := &Proxy[struct{}]{Phases: nilPeer{}, Transport: funcTransport(nil)}
	ex := newExchange("GET", "/", "")
	p.ServeExchange(ex)
	if ex.resp.Status != 503 {
		t.Fatalf("status %d, want 503", ex.resp.Status)
	}
}

// The per-request context starts zeroed for every request even though states are pooled.
type countCtx struct{ n int }
type countPhases struct {
	Base[countCtx]
	seen *[]int
}

func (c countPhases) UpstreamPeer(s *Session, x *countCtx) (*upstream.Peer, error) {
	x.n++
	*c.seen = append(*c.seen, x.n)
	return testPeer, nil
}

func TestContextZeroedPerRequest(t *testing.T) {
	var seen []int
	p := &Proxy[countCtx]{Phases: countPhases{seen: &seen}, Transport: funcTransport(func(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
		return okResponse(""), nil
	})}
	for i := 0; i < 3; i++ {
		p.ServeExchange(newExchange("GET", "/", ""))
	}
	if !slices.Equal(seen, []int{1, 1, 1}) {
		t.Fatalf("context values %v, want [1 1 1]", seen)
	}
}

// Every Connection field line counts, however many there are (RFC 9110 section 7.6.1), and
// the fields they name go even when deleting one moves the others.
func TestManyConnectionFieldsStripped(t *testing.T) {
	h := &message.Header{}
	h.Add("X-A", "1")
	h.Add("Connection", "x-a")
	for i := range 6 {
		h.Add("Connection", "x-private-"+string(rune('0'+i)))
		h.Add("X-Private-"+string(rune('0'+i)), "secret")
	}
	h.Add("Connection", "connection, x-last")
	h.Add("X-Last", "secret")
	h.Add("X-Kept", "yes")
	stripHopByHop(h, false)
	if h.Len() != 1 || h.Get("X-Kept") != "yes" {
		t.Fatalf("after stripping: %v, want only X-Kept", h.Fields())
	}
}

type statusLogger struct {
	Base[struct{}]
	status *int
}

func (statusLogger) UpstreamPeer(*Session, *struct{}) (*upstream.Peer, error) { return testPeer, nil }
func (l statusLogger) Logging(s *Session, err *fault.Error, _ *struct{}) {
	*l.status = s.Status
}

// A client that goes away mid-request (its upload breaks off) is logged as 499, and no error
// page is written to the dead connection.
func TestClientGoneIs499(t *testing.T) {
	var status int
	p := &Proxy[struct{}]{
		Phases: statusLogger{status: &status},
		Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
			return nil, fault.Classify(fault.Downstream, io.ErrUnexpectedEOF) // reading the body failed
		}),
	}
	ex := newExchange("POST", "/", "partial")
	p.ServeExchange(ex)
	if status != 499 || ex.wrote || ex.aborted == nil {
		t.Fatalf("logged %d, wrote a response %v, aborted %v; want 499, no response, aborted", status, ex.wrote, ex.aborted)
	}
}

// stalledExchange is a client that stopped reading: every body write times out.
type stalledExchange struct{ *fakeExchange }

func (stalledExchange) Write([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

// A stalled write to the client is a downstream write timeout, not a read timeout (issue 12).
func TestStalledDownstreamWriteIsWriteTimeout(t *testing.T) {
	var logged []string
	var logErr *fault.Error
	p := &Proxy[recordCtx]{
		Phases: &recorder{peer: testPeer, logged: &logged, logErr: &logErr},
		Transport: funcTransport(func(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
			return okResponse("a body the client will not take"), nil
		}),
	}
	p.ServeExchange(stalledExchange{newExchange("GET", "/", "")})
	if logErr == nil || logErr.Source != fault.Downstream || logErr.Kind != fault.WriteTimeout {
		t.Fatalf("got %v, want a downstream write timeout", logErr)
	}
}
