package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/server"
)

func TestLoadBalancerSkipsUnhealthyBackend(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var hitsA, hitsB atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !healthy.Load() {
				w.WriteHeader(503)
			}
			return
		}
		hitsA.Add(1)
		io.WriteString(w, "a")
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			hitsB.Add(1)
			io.WriteString(w, "b")
		}
	}))
	defer b.Close()

	p, bal, err := newBalancer(a.Listener.Addr().String()+","+b.Listener.Addr().String(), "/healthz", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &server.Server{Handler: p}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"

	get := func() string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	for i := 0; i < 20; i++ {
		get()
	}
	if hitsA.Load() == 0 || hitsB.Load() == 0 {
		t.Fatalf("both backends should serve while healthy: a=%d b=%d", hitsA.Load(), hitsB.Load())
	}

	healthy.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for bal.Backend(a.Listener.Addr().String()).Status().Healthy {
		if time.Now().After(deadline) {
			t.Fatal("backend a never marked down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := hitsA.Load()
	for i := 0; i < 20; i++ {
		if got := get(); got != "b" {
			t.Fatalf("request %d answered by %q while a is down", i, got)
		}
	}
	if hitsA.Load() != before {
		t.Fatal("unhealthy backend still received requests")
	}
}

func TestLoadBalancerRetriesOnDeadBackend(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "live") }))
	defer live.Close()

	p, bal, err := newBalancer(deadAddr+","+live.Listener.Addr().String(), "/", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &server.Server{Handler: p}
	go srv.Serve(ln)
	defer srv.Close()
	for i := 0; i < 10; i++ {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "live" {
			t.Fatalf("request %d: %d %q; a refused connection should be retried on the live backend", i, resp.StatusCode, body)
		}
	}
}
