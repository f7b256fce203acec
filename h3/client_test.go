package h3

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// startOrigin runs quic-go's own HTTP/3 server as an origin.
func startOrigin(t *testing.T, h http.HandlerFunc) string {
	cert, _ := testCertificate(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}})}
	go srv.Serve(pc)
	t.Cleanup(func() { srv.Close(); pc.Close() })
	return pc.LocalAddr().String()
}

func dialOrigin(t *testing.T, addr string) *ClientConn {
	_, pool := testCertificate(t)
	cc, err := Dial(ctxTimeout(t, 5*time.Second), addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestClientRoundTrip(t *testing.T) {
	addr := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Len")
		w.Header().Set("X-Path", r.URL.RequestURI())
		w.Header().Set("X-Req-Trailer", "")
		w.WriteHeader(201)
		w.Write(bytes.ToUpper(b))
		w.(http.Flusher).Flush()
		w.Header().Set("X-Len", r.Trailer.Get("X-Sent"))
	})
	cc := dialOrigin(t, addr)
	req := &message.Request{Method: "POST", Target: "/p%20q?x=1", Authority: "origin.test", Scheme: "https",
		Proto: message.HTTP11, ContentLength: -1, Body: strings.NewReader("hello")}
	req.Header.Add("Trailer", "X-Sent")
	req.Header.Add("Connection", "close")
	req.Trailer.Add("X-Sent", "5")
	resp, err := cc.RoundTrip(ctxTimeout(t, 5*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "HELLO" || resp.Status != 201 || resp.Proto != message.HTTP3 {
		t.Fatalf("got %d %s %q %v, want 201 HTTP/3.0 HELLO", resp.Status, resp.Proto, body, err)
	}
	if got := resp.Header.Get("x-path"); got != "/p%20q?x=1" {
		t.Errorf(":path: got %q, want /p%%20q?x=1", got)
	}
	if got := resp.Trailer.Get("x-len"); got != "5" {
		t.Errorf("trailer: got %q, want 5 (request trailer relayed back)", got)
	}
	if idle, _ := cc.Idle(); !idle || !cc.CanTakeNewRequest() {
		t.Errorf("after the exchange: idle %v, can take %v; want both", idle, cc.CanTakeNewRequest())
	}
}

func TestClientConcurrentAndLarge(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 8<<20)
	addr := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, r.URL.Path)
	})
	cc := dialOrigin(t, addr)
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			target := "/n" + string(rune('a'+i))
			resp, err := cc.RoundTrip(ctxTimeout(t, 5*time.Second), &message.Request{Method: "GET", Target: target, Authority: "o"})
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && string(b) != target {
				err = &fault.Error{Cause: io.ErrUnexpectedEOF}
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	resp, err := cc.RoundTrip(ctxTimeout(t, 10*time.Second), &message.Request{Method: "GET", Target: "/big", Authority: "o"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != int64(len(big)) {
		t.Fatalf("large body: got %d bytes, %v; want %d", n, err, len(big))
	}
	if cc.Requests() != 21 {
		t.Errorf("requests: got %d, want 21", cc.Requests())
	}
}

func TestDialFailureIsRetryable(t *testing.T) {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	addr := pc.LocalAddr().String()
	pc.Close() // nothing listens: the handshake times out or is refused
	_, err := Dial(ctxTimeout(t, 300*time.Millisecond), addr, &tls.Config{InsecureSkipVerify: true}, ClientOptions{})
	fe, ok := err.(*fault.Error)
	if !ok || fe.Source != fault.Upstream || !fe.Retry {
		t.Fatalf("got %#v, want a retryable upstream fault", err)
	}
}

// An origin that rejected the stream (H3_REQUEST_REJECTED, RFC 9114 section 4.1.1) certainly
// did not process the request: the fault says Unprocessed, as HTTP/2's REFUSED_STREAM does,
// so the engine may repeat even a non-idempotent request; Retry still depends on the body.
func TestRequestRejectedIsUnprocessed(t *testing.T) {
	rejected := &quic.StreamError{ErrorCode: quic.StreamErrorCode(http3.ErrCodeRequestRejected), Remote: true}
	for _, untouched := range []bool{true, false} {
		fe := upstreamError(rejected, true, untouched)
		if fe.Kind != fault.ConnectionClosed || !fe.Unprocessed || fe.Retry != untouched {
			t.Errorf("body untouched %v: kind %v unprocessed %v retry %v; want connection-closed, unprocessed, retry %v",
				untouched, fe.Kind, fe.Unprocessed, fe.Retry, untouched)
		}
	}
}
