package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/verge-edge/verge/server"
)

func TestGateway(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "user="+r.Header.Get("X-Authenticated-User")+" auth="+r.Header.Get("Authorization"))
	}))
	defer origin.Close()
	p := newGateway(origin.Listener.Addr().String(), "s3cret=alice,t0ken=bob", slog.New(slog.DiscardHandler))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &server.Server{Handler: p}
	go srv.Serve(ln)
	defer srv.Close()

	cases := []struct {
		auth       string
		wantStatus int
		wantBody   string
	}{
		{"", 401, "missing or invalid bearer token\n"},
		{"Bearer nope", 401, "missing or invalid bearer token\n"},
		{"Basic s3cret", 401, "missing or invalid bearer token\n"},
		{"Bearer s3cret", 200, "user=alice auth="},
		{"Bearer t0ken", 200, "user=bob auth="},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/private", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
			t.Errorf("auth %q: got %d %q, want %d %q", tc.auth, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
		}
		if tc.wantStatus == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("auth %q: 401 without WWW-Authenticate", tc.auth)
		}
	}
}
