package router

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

const internalSecret = "internal: only the origin's own network may see this"

// h2cOrigin is an origin that honours "Upgrade: h2c" leniently, as many servers do: any
// request offering h2c gets 101 and the connection then speaks HTTP/2 (x/net's server), even
// without "Connection: HTTP2-Settings". It serves an internal path that the proxy in front is
// configured to refuse, and counts the requests that reached it.
func h2cOrigin(t *testing.T) (addr string, internalHits *atomic.Int64) {
	t.Helper()
	internalHits = new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("/public", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "public over %s", r.Proto)
	})
	mux.HandleFunc("/internal", func(w http.ResponseWriter, r *http.Request) {
		internalHits.Add(1)
		io.WriteString(w, internalSecret)
	})
	addr = loopbackOrigin(t, func(c net.Conn) { serveLenientH2C(c, mux) })
	return addr, internalHits
}

// serveLenientH2C serves HTTP/1.1 requests on c until one offers h2c, then switches.
func serveLenientH2C(c net.Conn, h http.Handler) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if strings.Contains(strings.ToLower(strings.Join(req.Header.Values("Upgrade"), ",")), "h2c") {
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
			(&http2.Server{}).ServeConn(&bufferedConn{Conn: c, r: br}, &http2.ServeConnOpts{Handler: h, UpgradeRequest: req})
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp := rec.Result()
		resp.ContentLength = int64(rec.Body.Len())
		if resp.Write(c) != nil {
			return
		}
	}
}

// bufferedConn reads through the bufio.Reader that already holds bytes of the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func h2cConfig(origin string) string {
	return fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: internal-blocked
    match: {path_prefix: /internal}
    respond: {status: 403, body: "forbidden"}
  - name: public
    match: {path_prefix: /public}
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
`, origin)
}

// TestH2CSmugglingBlocked replays the reported attack: a client asks Verge to upgrade a request
// for a public path to h2c. An origin that accepts answers 101 and then speaks HTTP/2 on the
// same connection; had Verge tunnelled it, the client could request /internal on a new stream
// past Verge's routing. Verge must forward the request as a plain one (without Upgrade), and
// the internal path must stay unreachable.
func TestH2CSmugglingBlocked(t *testing.T) {
	origin, hits := h2cOrigin(t)
	_, base := startRuntime(t, h2cConfig(origin))
	addr := strings.TrimPrefix(base, "http://")

	for _, upgrade := range []string{"h2c", "H2C", "websocket, h2c", "h2c, websocket"} {
		t.Run(upgrade, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET /public HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
				"Upgrade: %s\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", addr, upgrade)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// The smuggling worked: show how far it goes, then fail.
				got := h2RequestOverUpgraded(t, c, br, addr, "/internal")
				t.Fatalf("Verge tunnelled an h2c upgrade (101); over it /internal answered %q", got)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "public over HTTP/1.1" {
				t.Fatalf("upgrade request answered %d %q, want the plain 200 of /public", resp.StatusCode, body)
			}
			if resp.Header.Get("Upgrade") != "" {
				t.Errorf("response carries Upgrade %q", resp.Header.Get("Upgrade"))
			}
			// The connection still speaks HTTP/1.1 through Verge's routes.
			fmt.Fprintf(c, "GET /internal HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 || bytes.Contains(body, []byte(internalSecret)) {
				t.Errorf("/internal on the same connection answered %d %q, want 403", resp.StatusCode, body)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the origin's internal path was reached %d times", n)
	}
}

// h2RequestOverUpgraded speaks HTTP/2 on a connection the origin switched to h2c and asks for
// path on a new stream, returning what came back (the attack, to report how far it got).
func h2RequestOverUpgraded(t *testing.T, c net.Conn, br *bufio.Reader, authority, path string) string {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		return "write preface: " + err.Error()
	}
	fr := http2.NewFramer(c, br)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	var body bytes.Buffer
	for range 100 {
		f, err := fr.ReadFrame()
		if err != nil {
			return body.String() + " (" + err.Error() + ")"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if f.StreamID == 3 {
				body.Write(f.Data())
				if f.StreamEnded() {
					return body.String()
				}
			}
		}
	}
	return body.String()
}

// wsOrigin echoes WebSocket messages.
func wsOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if c.Write(r.Context(), typ, append([]byte("echo: "), msg...)) != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestWebSocketStillUpgrades: the default upgrade list lets WebSocket through; a route with
// "upgrades: []" forwards the handshake as a plain request, which the origin refuses.
func TestWebSocketStillUpgrades(t *testing.T) {
	o := wsOrigin(t)
	_, base := startRuntime(t, fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: ws
    match: {path_prefix: /ws}
    upstream: app
  - name: no-upgrades
    match: {path_prefix: /plain}
    upstream: app
    upgrades: []
upstreams:
  - name: app
    servers: [{address: %q}]
`, strings.TrimPrefix(o.URL, "http://")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket through the default route: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "echo: hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	c.Close(websocket.StatusNormalClosure, "")

	_, resp, err = websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/plain", nil)
	if err == nil {
		t.Fatal("websocket upgraded on a route with upgrades: []")
	}
	if resp == nil || resp.StatusCode == 101 {
		t.Fatalf("handshake on upgrades: [] answered %v, want the origin's refusal", resp)
	}
}

// TestTraceRefusedUnlessEnabled: TRACE gets 405 with Allow and never reaches the origin,
// unless the route sets allow_trace.
func TestTraceRefusedUnlessEnabled(t *testing.T) {
	var traces atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "TRACE" {
			traces.Add(1)
		}
		io.WriteString(w, r.Method+" seen")
	}))
	t.Cleanup(o.Close)
	_, base := startRuntime(t, fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: default
    upstream: app
  - name: traced
    match: {path_prefix: /debug}
    upstream: app
    allow_trace: true
upstreams:
  - name: app
    servers: [{address: %q}]
`, strings.TrimPrefix(o.URL, "http://")))
	do := func(method, path string) (int, http.Header, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, h, _ := do("TRACE", "/")
	if code != 405 || h.Get("Allow") == "" || strings.Contains(h.Get("Allow"), "TRACE") {
		t.Errorf("TRACE / = %d Allow=%q, want 405 with Allow", code, h.Get("Allow"))
	}
	if traces.Load() != 0 {
		t.Fatalf("a refused TRACE reached the origin")
	}
	if code, _, body := do("TRACE", "/debug/x"); code != 200 || body != "TRACE seen" {
		t.Errorf("TRACE on allow_trace route = %d %q, want 200", code, body)
	}
	if code, _, body := do("GET", "/"); code != 200 || body != "GET seen" {
		t.Errorf("GET / = %d %q", code, body)
	}
}

// logLines collects access-log lines and signals each one.
type logLines struct {
	mu    sync.Mutex
	lines []string
	c     chan struct{}
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	l.c <- struct{}{}
	return len(p), nil
}

// TestForwardedThroughConfig: forged forwarding fields from an untrusted client are replaced;
// from a peer in trusted_proxies they are appended to and the resolved client address is what
// the access log records.
func TestForwardedThroughConfig(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]string{
			"xff": r.Header.Values("X-Forwarded-For"), "real": r.Header.Values("X-Real-Ip"),
			"host": r.Header.Values("X-Forwarded-Host"), "proto": r.Header.Values("X-Forwarded-Proto"),
			"fwd": r.Header.Values("Forwarded"),
		})
	}))
	t.Cleanup(o.Close)
	for _, tc := range []struct {
		name, trusted string
		want          map[string][]string
		wantLog       string
	}{
		{"untrusted", "", map[string][]string{
			"xff": {"127.0.0.1"}, "real": {"127.0.0.1"}, "host": {"HOST"}, "proto": {"http"}, "fwd": nil,
		}, `"remote_addr":"127.0.0.1:`},
		{"untrusted with forwarded_header", "FWD", map[string][]string{
			"xff": {"127.0.0.1"}, "real": {"127.0.0.1"}, "host": {"HOST"}, "proto": {"http"},
			"fwd": {`for=127.0.0.1;host="HOST";proto=http`},
		}, `"remote_addr":"127.0.0.1:`},
		{"trusted", "trusted_proxies: [127.0.0.0/8]\nFWD", map[string][]string{
			"xff": {"198.51.100.9, 127.0.0.1"}, "real": {"198.51.100.9"}, "host": {"shop.example"}, "proto": {"https"},
			"fwd": {`for=198.51.100.9, for=127.0.0.1;host="HOST";proto=http`},
		}, `"remote_addr":"198.51.100.9"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logLines{c: make(chan struct{}, 16)}
			tr := &upstream.Transport{}
			t.Cleanup(func() { tr.Close() })
			rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore(), AccessLogWriter: logs}})
			fwd := ""
			if strings.Contains(tc.trusted, "FWD") {
				fwd = ", forwarded_header: true"
			}
			y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"%s}]
admin: {disabled: true}
access_log: {fields: [remote_addr]}
routes: [{upstream: app}]
upstreams: [{name: app, servers: [{address: %q}]}]
%s`, fwd, strings.TrimPrefix(o.URL, "http://"), strings.ReplaceAll(tc.trusted, "FWD", ""))
			if err := rt.Apply(mustConfig(t, y)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close() })
			addr := rt.Addr("main").String()
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			req.Header.Set("X-Forwarded-For", "198.51.100.9")
			req.Header.Set("X-Real-IP", "6.6.6.6")
			req.Header.Set("X-Forwarded-Host", "shop.example")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("Forwarded", "for=198.51.100.9")
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string][]string
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			for k, v := range tc.want {
				for i := range v {
					v[i] = strings.ReplaceAll(v[i], "HOST", addr)
				}
				if fmt.Sprint(got[k]) != fmt.Sprint(v) {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			select {
			case <-logs.c:
			case <-time.After(10 * time.Second):
				t.Fatal("no access-log line")
			}
			logs.mu.Lock()
			line := logs.lines[0]
			logs.mu.Unlock()
			if !strings.Contains(line, tc.wantLog) {
				t.Errorf("access log %q, want %s", line, tc.wantLog)
			}
		})
	}
}
