package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

// TestBodyReadTimeoutH2H3 replays the report: over HTTP/2 and HTTP/3 a client sends the first
// bytes of a request body and then nothing. timeouts.body_read must end the stream (HTTP/2:
// RST_STREAM CANCEL; HTTP/3: 408 and STOP_SENDING, as nothing was sent yet) and cancel the
// upstream request, which otherwise waits for the rest of the body for as long as the client
// keeps the stream open.
func TestBodyReadTimeoutH2H3(t *testing.T) {
	errWhole := errors.New("the origin read the whole body")
	upstreamGone := make(chan error, 4)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err == nil {
			err = errWhole
		}
		upstreamGone <- err
	}))
	t.Cleanup(origin.Close)
	cert, key, pool, _ := writeTestCert(t, t.TempDir())
	y := fmt.Sprintf(`listeners:
  - name: main
    address: "127.0.0.1:0"
    tls: {certificates: [{cert: %q, key: %q}]}
    http3: {enabled: true}
    timeouts: {body_read: 300ms}
access_log: {output: "off"}
admin: {disabled: true}
shutdown: {grace_period: 2s}
routes:
  - name: app
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
`, cert, key, origin.Listener.Addr().String())
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore()}})
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	addr := rt.Addr("main").String()
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	for _, tc := range []struct {
		proto string
		rt    http.RoundTripper
	}{
		{"h2", &http2.Transport{TLSClientConfig: tlsConf}},
		{"h3", &http3.Transport{TLSClientConfig: tlsConf}},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			if c, ok := tc.rt.(io.Closer); ok {
				defer c.Close()
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			defer pw.Close()
			// Enough to pass every buffer on the way, so the origin has the request.
			go pw.Write(make([]byte, 256<<10))
			req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+addr+"/upload", pr)
			res, err := tc.rt.RoundTrip(req)
			switch tc.proto {
			case "h2":
				var se http2.StreamError
				if err == nil {
					res.Body.Close()
					t.Fatalf("got %d, want the stream reset", res.StatusCode)
				} else if !errors.As(err, &se) || se.Code != http2.ErrCodeCancel {
					t.Fatalf("got %v, want RST_STREAM CANCEL", err)
				}
			case "h3":
				if err != nil {
					t.Fatalf("got %v, want 408", err)
				}
				res.Body.Close()
				if res.StatusCode != 408 {
					t.Fatalf("got %d, want 408", res.StatusCode)
				}
			}
			select {
			case err := <-upstreamGone:
				if err == errWhole {
					t.Fatal(err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the upstream request was not cancelled")
			}
		})
	}
}
