package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/verge-edge/verge/server"
)

func origin(t *testing.T, name string) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "origin/1.0")
		w.Header().Set("X-Powered-By", "php")
		io.WriteString(w, name+" "+r.URL.RequestURI()+" v="+r.Header.Get("X-Api-Version"))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestRewrite(t *testing.T) {
	api, static, web := origin(t, "api"), origin(t, "static"), origin(t, "web")
	p := newRewriter(api.Listener.Addr().String(), static.Listener.Addr().String(), web.Listener.Addr().String())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &server.Server{Handler: p}
	go srv.Serve(ln)
	defer srv.Close()

	cases := []struct{ host, path, want string }{
		{"api.example.test", "/users?id=1", "api /users?id=1 v=2"},
		{"api.example.test", "/static/x.css", "api /static/x.css v=2"},
		{"www.example.test", "/static/css/site.css", "static /css/site.css v="},
		{"www.example.test", "/", "web / v="},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+tc.path, nil)
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want {
			t.Errorf("%s%s: got %q, want %q", tc.host, tc.path, body, tc.want)
		}
		if resp.Header.Get("Server") != "" || resp.Header.Get("X-Powered-By") != "" {
			t.Errorf("%s%s: origin headers leaked: %v", tc.host, tc.path, resp.Header)
		}
		if resp.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("%s%s: missing HSTS", tc.host, tc.path)
		}
	}
}
