package router

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testnet"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

func origin(t *testing.T, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("sleep"); d != "" {
			dur, _ := time.ParseDuration(d)
			time.Sleep(dur)
		}
		w.Header().Set("X-Seen-Proxied-By", r.Header.Get("X-Proxied-By"))
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

// loopbackOrigin accepts connections on a loopback port and runs serve on each in its own
// goroutine (serve need not close it). The test's cleanup closes the listener and every
// connection and waits for the goroutines.
func loopbackOrigin(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func runtimeConfig(body string, origins ...string) string {
	var b strings.Builder
	b.WriteString("listeners: [{name: main, address: \"127.0.0.1:0\"}]\naccess_log: {output: \"off\"}\nadmin: {disabled: true}\nshutdown: {grace_period: 5s}\n")
	if body != "" {
		fmt.Fprintf(&b, "routes:\n  - name: fixed\n    respond: {body: %q}\n", body)
		return b.String()
	}
	b.WriteString("routes:\n  - name: proxied\n    upstream: app\n    request_headers: {set: {X-Proxied-By: verge}}\n")
	b.WriteString("upstreams:\n  - name: app\n    servers:\n")
	for _, o := range origins {
		fmt.Fprintf(&b, "      - address: %s\n", strings.TrimPrefix(o, "http://"))
	}
	return b.String()
}

func startRuntime(t *testing.T, y string) (*Runtime, string) {
	t.Helper()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore()}})
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, "http://" + rt.Addr("main").String()
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

func TestRuntimeProxies(t *testing.T) {
	o := origin(t, "from origin")
	_, base := startRuntime(t, runtimeConfig("", o.URL))
	resp, err := http.Get(base + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "from origin" || resp.Header.Get("X-Seen-Proxied-By") != "verge" {
		t.Errorf("got %q (origin saw X-Proxied-By %q), want the origin's body and the header set", body, resp.Header.Get("X-Seen-Proxied-By"))
	}
}

// TestReloadUnderLoad swaps configs while clients send requests continuously: every request
// must succeed, and requests after the swap must see the new config.
func TestReloadUnderLoad(t *testing.T) {
	o1, o2 := origin(t, "one"), origin(t, "two")
	rt, base := startRuntime(t, runtimeConfig("", o1.URL))

	var failures, total atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(c, base+"/"); err != nil {
					failures.Add(1)
					lastErr.Store(err)
				}
				total.Add(1)
			}
		}()
	}
	configs := []string{runtimeConfig("", o2.URL), runtimeConfig("fixed"), runtimeConfig("", o1.URL, o2.URL), runtimeConfig("", o2.URL)}
	// Between reloads, wait for the clients to complete a batch of requests (an event, not a
	// span of time), so that every generation serves traffic however busy the machine is.
	guard := time.Now().Add(30 * time.Second) // a failure guard, not a wait
	waitRequests := func(n int64) {
		want := total.Load() + n
		for total.Load() < want {
			if time.Now().After(guard) {
				t.Fatalf("clients stalled at %d requests", total.Load())
			}
			time.Sleep(time.Millisecond) // poll interval
		}
	}
	for _, y := range configs {
		waitRequests(20)
		if err := rt.Apply(mustConfig(t, y)); err != nil {
			t.Fatal(err)
		}
	}
	waitRequests(20)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during reloads; last: %v", n, total.Load(), lastErr.Load())
	}
	if got, err := get(http.DefaultClient, base+"/"); err != nil || got != "two" {
		t.Errorf("after the last reload: got %q, %v; want \"two\"", got, err)
	}
}

func TestReloadRefusedKeepsServing(t *testing.T) {
	_, baseA := startRuntime(t, runtimeConfig("A"))
	rt, base := startRuntime(t, runtimeConfig("B"))
	// A second listener on an address already taken: the new generation cannot start.
	taken := strings.TrimPrefix(baseA, "http://")
	bad := runtimeConfig("C") + "" // same listener plus one that collides
	bad = strings.Replace(bad, "listeners: [{name: main, address: \"127.0.0.1:0\"}]",
		"listeners: [{name: main, address: \"127.0.0.1:0\"}, {name: extra, address: \""+taken+"\"}]", 1)
	if err := rt.Apply(mustConfig(t, bad)); err == nil {
		t.Fatal("Apply with a taken address succeeded")
	}
	if got, err := get(http.DefaultClient, base+"/"); err != nil || got != "B" {
		t.Errorf("after a refused reload: got %q, %v; want the old config's \"B\"", got, err)
	}
}

func TestShutdownDrainsSlowRequest(t *testing.T) {
	// The origin holds the request until the test has seen Shutdown begin; no sleeps.
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var answered atomic.Bool
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "slow done")
		answered.Store(true)
	}))
	t.Cleanup(o.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	rt, base := startRuntime(t, runtimeConfig("", o.URL))
	addr := strings.TrimPrefix(base, "http://")
	res := make(chan string, 1)
	go func() {
		b, err := get(http.DefaultClient, base+"/")
		if err != nil {
			b = err.Error()
		}
		res <- b
	}()
	guard := time.Now().Add(10 * time.Second) // a failure guard, not a wait
	select {
	case <-entered:
	case <-time.After(time.Until(guard)):
		t.Fatal("the request never reached the origin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() {
		err := rt.Shutdown(ctx)
		if err == nil && !answered.Load() {
			err = fmt.Errorf("Shutdown returned before the in-flight request was answered")
		}
		shutdown <- err
	}()
	// Shutdown has begun once the listener refuses connections.
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(guard) {
			t.Fatal("Shutdown never closed the listener")
		}
		select {
		case err := <-shutdown:
			t.Fatalf("Shutdown returned (%v) before it closed the listener", err)
		case <-time.After(5 * time.Millisecond): // poll interval
		}
	}
	close(release)
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := <-res; got != "slow done" {
		t.Errorf("in-flight request during shutdown: got %q, want it completed", got)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestHandoffMovesSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandoff(ln, nil)
	t.Cleanup(func() { h.Close() })
	first := h.Attach()
	second := h.Attach() // replaces first: connections go to second
	first.Close()
	done := make(chan []byte, 1)
	go func() {
		c, err := second.Accept()
		if err != nil {
			done <- nil
			return
		}
		b := make([]byte, 2)
		io.ReadFull(c, b)
		c.Close()
		done <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hi"))
	defer c.Close()
	select {
	case b := <-done:
		if !bytes.Equal(b, []byte("hi")) {
			t.Errorf("second listener got %q, want \"hi\"", b)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("connection not handed to the attached listener")
	}
}

// TestRetriesSkipDeadServer: with retries a refused connection moves on to the next server;
// with retries: 0 the client sees the 502.
func TestRetriesSkipDeadServer(t *testing.T) {
	o := origin(t, "alive")
	y := runtimeConfig("", "http://"+testnet.RefusedAddr(t), o.URL) + "    passive: {max_fails: -1}\n"
	_, base := startRuntime(t, y)
	for i := range 6 {
		if got, err := get(http.DefaultClient, base+"/"); err != nil || got != "alive" {
			t.Fatalf("request %d with retries: got %q, %v", i, got, err)
		}
	}
	_, base0 := startRuntime(t, strings.Replace(y, "    upstream: app\n", "    upstream: app\n    retries: 0\n", 1))
	failed := 0
	for range 6 {
		if _, err := get(http.DefaultClient, base0+"/"); err != nil {
			if !strings.Contains(err.Error(), "status 502") {
				t.Fatalf("without retries: got %v, want a 502", err)
			}
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("without retries: %d of 6 requests failed, want 3 (round robin over one dead server)", failed)
	}
}

func BenchmarkServeRespond(b *testing.B) {
	in, err := NewInstance(mustConfig(b, matchConfig), Deps{Transport: nopTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	ex := newExchange("GET", "www.example.com", "/")
	b.ReportAllocs()
	for b.Loop() {
		ex.body.Reset()
		ex.resp.Header.Reset()
		h.ServeExchange(ex)
	}
}
