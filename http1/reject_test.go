package http1

import (
	"bufio"
	"strings"
	"testing"
)

// Requests the parser rejects get a body naming the reason and are reported to OnReject
// (issue 12: they were in neither the access log nor the metrics, with empty bodies).
func TestRejectReasonAndHook(t *testing.T) {
	tests := []struct {
		name   string
		req    string
		status int
		reason string
	}{
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 2048) + "\r\n\r\n", 431, "request head too large"},
		{"uri too long", "GET /" + strings.Repeat("a", 2048) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, "request line too long"},
		{"bad request", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400, "invalid header field name"},
		{"version", "GET / HTTP/2.5\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan Reject, 1)
			s := &Server{
				Limits:  Limits{MaxRequestLine: 1024, MaxHeaderBytes: 1024},
				Handler: func(ex *Exchange) { t.Error("handler called for a rejected request") },
				OnReject: func(r Reject) {
					r.Conn = nil // not valid after the call
					got <- r
				},
			}
			c := dial(t, startServer(t, s))
			if _, err := c.Write([]byte(tt.req)); err != nil {
				t.Fatal(err)
			}
			resp := readRawResponse(t, bufio.NewReader(c), false)
			if resp.status != tt.status {
				t.Fatalf("got status %d, want %d", resp.status, tt.status)
			}
			if !strings.Contains(resp.body, tt.reason) || resp.header["content-type"] == "" {
				t.Errorf("got body %q (content-type %q), want the reason %q as text", resp.body, resp.header["content-type"], tt.reason)
			}
			r := <-got
			if r.Status != tt.status || r.Reason != tt.reason || r.Err == nil || r.Time.IsZero() {
				t.Errorf("OnReject got %+v, want status %d reason %q", r, tt.status, tt.reason)
			}
			if r.BodyBytes != int64(len(resp.body)) {
				t.Errorf("OnReject got BodyBytes %d, want the %d bytes of the body sent", r.BodyBytes, len(resp.body))
			}
		})
	}
}
