package proxy

import (
	"context"
	"crypto/tls"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// clientCtx records what the phases saw.
type clientCtx struct{}

type clientPhases struct {
	Base[clientCtx]
	seen    *netip.AddrPort
	trusted *bool
}

func (c clientPhases) EarlyRequest(s *Session, _ *clientCtx) error {
	*c.seen, *c.trusted = s.ClientAddr(), s.PeerTrusted()
	return nil
}
func (clientPhases) UpstreamPeer(*Session, *clientCtx) (*upstream.Peer, error) { return testPeer, nil }

var forwardingNames = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP", "Forwarded"}

// TestForwardedFields is the table of what the origin sees for trusted and untrusted peers
// sending forged or genuine forwarding fields, and which client address the phases see.
func TestForwardedFields(t *testing.T) {
	forged := [][2]string{
		{"X-Forwarded-For", "1.2.3.4"},
		{"X-Forwarded-Proto", "https"},
		{"X-Forwarded-Host", "admin.internal"},
		{"X-Real-IP", "1.2.3.4"},
		{"Forwarded", "for=1.2.3.4;proto=https"},
		{"x-real-ip", "5.6.7.8"}, // another spelling
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name       string
		peer       string
		trusted    []netip.Prefix
		trustAll   bool
		tls        bool
		in         [][2]string
		want       map[string]string // every forwarding field the origin gets; absent ones must be absent
		wantClient string
		wantTrust  bool
		noFwd      bool // Proxy.Forwarded off (the default)
	}{
		{
			name: "default: untrusted peer's Forwarded dropped, none added", peer: "192.0.2.7:5555", in: forged, noFwd: true,
			want: map[string]string{
				"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "192.0.2.7",
			},
			wantClient: "192.0.2.7:5555",
		},
		{
			name: "default: trusted proxy's Forwarded passes unchanged", peer: "10.1.1.1:4000", trusted: trusted, noFwd: true,
			in: [][2]string{{"X-Forwarded-For", "198.51.100.9"}, {"Forwarded", "for=198.51.100.9;proto=https"}},
			want: map[string]string{
				"X-Forwarded-For": "198.51.100.9, 10.1.1.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "198.51.100.9", "Forwarded": "for=198.51.100.9;proto=https",
			},
			wantClient: "198.51.100.9:0", wantTrust: true,
		},
		{
			name: "untrusted peer forging every field", peer: "192.0.2.7:5555", in: forged,
			want: map[string]string{
				"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "192.0.2.7", "Forwarded": `for=192.0.2.7;host="example.test";proto=http`,
			},
			wantClient: "192.0.2.7:5555",
		},
		{
			name: "untrusted while others are trusted", peer: "192.0.2.7:5555", trusted: trusted, in: forged,
			want: map[string]string{
				"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "192.0.2.7", "Forwarded": `for=192.0.2.7;host="example.test";proto=http`,
			},
			wantClient: "192.0.2.7:5555",
		},
		{
			name: "untrusted IPv6 peer over TLS", peer: "[2001:db9::5]:443", trusted: trusted, tls: true, in: forged,
			want: map[string]string{
				"X-Forwarded-For": "2001:db9::5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "2001:db9::5", "Forwarded": `for="[2001:db9::5]";host="example.test";proto=https`,
			},
			wantClient: "[2001:db9::5]:443",
		},
		{
			name: "trusted proxy: append, keep proto and host, resolve the client", peer: "10.1.1.1:4000", trusted: trusted,
			in: [][2]string{
				{"X-Forwarded-For", "198.51.100.9"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "shop.example"},
				{"X-Real-IP", "198.51.100.9"}, {"Forwarded", "for=198.51.100.9;proto=https"},
			},
			want: map[string]string{
				"X-Forwarded-For": "198.51.100.9, 10.1.1.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example",
				"X-Real-IP": "198.51.100.9", "Forwarded": `for=198.51.100.9;proto=https, for=10.1.1.1;host="example.test";proto=http`,
			},
			wantClient: "198.51.100.9:0", wantTrust: true,
		},
		{
			name: "trusted chain: skip trusted hops from the right, not a forged leftmost", peer: "10.1.1.1:4000", trusted: trusted,
			in: [][2]string{{"X-Forwarded-For", "6.6.6.6, 198.51.100.9"}, {"X-Forwarded-For", "10.2.2.2"}},
			want: map[string]string{
				"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.2.2.2, 10.1.1.1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "example.test", "X-Real-IP": "198.51.100.9",
				"Forwarded": `for=10.1.1.1;host="example.test";proto=http`,
			},
			wantClient: "198.51.100.9:0", wantTrust: true,
		},
		{
			name: "trusted chain, all trusted: the first one", peer: "10.1.1.1:4000", trusted: trusted,
			in: [][2]string{{"X-Forwarded-For", "10.9.9.9,10.2.2.2"}},
			want: map[string]string{
				"X-Forwarded-For": "10.9.9.9,10.2.2.2, 10.1.1.1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "example.test", "X-Real-IP": "10.9.9.9",
				"Forwarded": `for=10.1.1.1;host="example.test";proto=http`,
			},
			wantClient: "10.9.9.9:0", wantTrust: true,
		},
		{
			name: "trusted chain with garbage: stop at the last readable address", peer: "10.1.1.1:4000", trusted: trusted,
			in: [][2]string{{"X-Forwarded-For", "198.51.100.9, unknown, 10.2.2.2"}},
			want: map[string]string{
				"X-Forwarded-For": "198.51.100.9, unknown, 10.2.2.2, 10.1.1.1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "example.test", "X-Real-IP": "10.2.2.2",
				"Forwarded": `for=10.1.1.1;host="example.test";proto=http`,
			},
			wantClient: "10.2.2.2:0", wantTrust: true,
		},
		{
			name: "trusted proxy with ports and brackets", peer: "[2001:db8::1]:4000", trusted: trusted,
			in: [][2]string{{"X-Forwarded-For", "[2001:db9::7]:1234, 198.51.100.9:80"}},
			want: map[string]string{
				"X-Forwarded-For": "[2001:db9::7]:1234, 198.51.100.9:80, 2001:db8::1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "example.test", "X-Real-IP": "198.51.100.9",
				"Forwarded": `for="[2001:db8::1]";host="example.test";proto=http`,
			},
			wantClient: "198.51.100.9:0", wantTrust: true,
		},
		{
			name: "trusted proxy without forwarding fields", peer: "10.1.1.1:4000", trusted: trusted,
			want: map[string]string{
				"X-Forwarded-For": "10.1.1.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "10.1.1.1", "Forwarded": `for=10.1.1.1;host="example.test";proto=http`,
			},
			wantClient: "10.1.1.1:4000", wantTrust: true,
		},
		{
			name: "trust every peer (TrustForwarded)", peer: "192.0.2.7:5555", trustAll: true,
			in: [][2]string{{"X-Forwarded-For", "198.51.100.9"}},
			want: map[string]string{
				"X-Forwarded-For": "198.51.100.9, 192.0.2.7", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "198.51.100.9", "Forwarded": `for=192.0.2.7;host="example.test";proto=http`,
			},
			wantClient: "198.51.100.9:0", wantTrust: true,
		},
		{
			name: "IPv4-mapped trusted peer", peer: "[::ffff:10.1.1.1]:4000", trusted: trusted,
			in: [][2]string{{"X-Forwarded-For", "198.51.100.9"}},
			want: map[string]string{
				"X-Forwarded-For": "198.51.100.9, 10.1.1.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "example.test",
				"X-Real-IP": "198.51.100.9", "Forwarded": `for=10.1.1.1;host="example.test";proto=http`,
			},
			wantClient: "198.51.100.9:0", wantTrust: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen netip.AddrPort
			var seenTrust bool
			p := &Proxy[clientCtx]{
				Phases:         clientPhases{seen: &seen, trusted: &seenTrust},
				TrustedProxies: tc.trusted,
				TrustForwarded: tc.trustAll,
				Forwarded:      !tc.noFwd,
			}
			got := originHeader(p, tc.peer, tc.tls, tc.in)
			for _, name := range forwardingNames {
				var vals []string
				got.Values(name, func(v string) bool { vals = append(vals, v); return true })
				want, ok := tc.want[name]
				switch {
				case !ok && len(vals) > 0:
					t.Errorf("%s = %q, want none", name, vals)
				case ok && !slices.Equal(vals, []string{want}):
					t.Errorf("%s = %q, want [%q]", name, vals, want)
				}
			}
			if seen.String() != tc.wantClient || seenTrust != tc.wantTrust {
				t.Errorf("phases saw client %s trusted=%v, want %s trusted=%v", seen, seenTrust, tc.wantClient, tc.wantTrust)
			}
		})
	}
}

// TestForwardedFieldsUnderscoreSpellings: an untrusted client's forwarding fields spelled with
// underscores (which CGI-style origins read as the real ones), and the other fields origins
// read for the scheme, port, prefix and client address (X-Forwarded-Ssl: on means https to
// Rack, ahead of X-Forwarded-Proto), are dropped like the real spellings; other underscore
// fields pass.
func TestForwardedFieldsUnderscoreSpellings(t *testing.T) {
	p := &Proxy[clientCtx]{Phases: clientPhases{seen: new(netip.AddrPort), trusted: new(bool)}}
	forged := []string{"X_Forwarded_For", "x_forwarded_for", "X-Forwarded_For", "X_Real_IP", "x_real-ip", "X_Forwarded_Host", "X_Forwarded_Proto",
		// Other fields origins read for the scheme, port, path prefix and client address.
		"X-Forwarded-Ssl", "Front-End-Https", "X-Forwarded-Scheme", "X_Forwarded_Port", "X-Forwarded-Prefix",
		"Client-IP", "X-Client-IP", "True-Client-IP", "X-Cluster-Client-IP"}
	var in [][2]string
	for _, name := range forged {
		in = append(in, [2]string{name, "1.2.3.4"})
	}
	in = append(in, [2]string{"X_Custom_Field", "kept"})
	got := originHeader(p, "192.0.2.7:5555", false, in)
	for _, f := range got.Fields() {
		for _, name := range forged {
			if f.Name == name {
				t.Errorf("forged %s: %q reached the origin", f.Name, f.Value)
			}
		}
	}
	if v := got.Get("X_Custom_Field"); v != "kept" {
		t.Errorf("X_Custom_Field = %q, want it forwarded", v)
	}
	if v := got.Get("X-Forwarded-For"); v != "192.0.2.7" {
		t.Errorf("X-Forwarded-For = %q, want the peer", v)
	}
}

// originHeader serves a GET for / from peer (over TLS with overTLS) carrying the fields in
// through p, whose Transport it sets, and returns the header the origin got.
func originHeader(p *Proxy[clientCtx], peer string, overTLS bool, in [][2]string) message.Header {
	var got message.Header
	p.Transport = funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
		got = r.Header.Clone()
		return okResponse(""), nil
	})
	ex := newExchange("GET", "/", "")
	ex.req.Scheme = ""
	ex.info.RemoteAddr = netip.MustParseAddrPort(peer)
	if overTLS {
		ex.info.TLS = &tls.ConnectionState{}
	}
	for _, f := range in {
		ex.req.Header.Add(f[0], f[1])
	}
	p.ServeExchange(ex)
	return got
}

// TestUpgradePolicy: only allowed protocols are forwarded as a switch; anything else (h2c
// above all) goes upstream as a plain request without Upgrade, and an origin answering 101 to
// it is refused.
func TestUpgradePolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upgrade  string
		allowed  []string
		perReq   []string
		setReq   bool
		want     bool
		wantCode int
	}{
		{"websocket by default", "websocket", nil, nil, false, true, 502},
		{"WebSocket, any case", "WebSocket", nil, nil, false, true, 502},
		{"h2c never", "h2c", nil, nil, false, false, 502},
		{"h2c never, even listed", "h2c", []string{"websocket", "h2c"}, nil, false, false, 502},
		{"HTTP/2.0 never", "HTTP/2.0", []string{"http"}, nil, false, false, 502},
		{"mixed offer refused", "websocket, h2c", nil, nil, false, false, 502},
		{"unlisted protocol", "foo/1", nil, nil, false, false, 502},
		{"listed protocol with version", "foo/1", []string{"websocket", "foo"}, nil, false, true, 502},
		{"per-request list wins", "websocket", nil, []string{"foo"}, true, false, 502},
		{"per-request empty list allows none", "websocket", nil, []string{}, true, false, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got message.Header
			p := &Proxy[upgradeCtx]{
				Phases:   upgradePhases{list: tc.perReq, set: tc.setReq},
				Upgrades: tc.allowed,
				Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
					got = r.Header.Clone()
					// A hostile or h2c-capable origin switches protocols whatever it was sent.
					resp := &message.Response{Status: 101, Proto: message.HTTP11}
					resp.Header.Add("Upgrade", "h2c")
					resp.Body = nopRWC{}
					return resp, nil
				}),
			}
			ex := newExchange("GET", "/internal", "")
			ex.req.Header.Add("Connection", "Upgrade, HTTP2-Settings")
			ex.req.Header.Add("Upgrade", tc.upgrade)
			ex.req.Header.Add("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
			p.ServeExchange(ex)
			if has := got.Has("Upgrade"); has != tc.want {
				t.Errorf("Upgrade forwarded = %v (%q), want %v", has, got.Get("Upgrade"), tc.want)
			}
			if got.Has("HTTP2-Settings") || got.Has("Connection") {
				t.Errorf("connection-specific fields forwarded: %v", got.Fields())
			}
			if !tc.want && ex.resp.Status != tc.wantCode {
				t.Errorf("a 101 to a plain request answered %d downstream, want %d", ex.resp.Status, tc.wantCode)
			}
		})
	}
}

type upgradeCtx struct{}

type upgradePhases struct {
	Base[upgradeCtx]
	list []string
	set  bool
}

func (u upgradePhases) Request(s *Session, _ *upgradeCtx) (bool, error) {
	if u.set {
		s.AllowUpgrades(u.list)
	}
	return false, nil
}
func (upgradePhases) UpstreamPeer(*Session, *upgradeCtx) (*upstream.Peer, error) {
	return testPeer, nil
}

type nopRWC struct{}

func (nopRWC) Read([]byte) (int, error)    { return 0, nil }
func (nopRWC) Write(p []byte) (int, error) { return len(p), nil }
func (nopRWC) Close() error                { return nil }

// TestTraceAndConnectRefused: TRACE and CONNECT get 405 with Allow and never reach the
// origin unless enabled.
func TestTraceAndConnectRefused(t *testing.T) {
	for _, tc := range []struct {
		method       string
		allowTrace   bool
		allowConnect bool
		want         int
	}{
		{"TRACE", false, false, 405},
		{"CONNECT", false, false, 405},
		{"TRACE", true, false, 200},
		{"GET", false, false, 200},
	} {
		t.Run(tc.method, func(t *testing.T) {
			called := false
			p := &Proxy[recordCtx]{
				Phases:       &recorder{peer: testPeer, logged: new([]string)},
				AllowTrace:   tc.allowTrace,
				AllowConnect: tc.allowConnect,
				Transport: funcTransport(func(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
					called = true
					return okResponse("echo"), nil
				}),
			}
			ex := newExchange(tc.method, "/", "")
			p.ServeExchange(ex)
			if ex.resp.Status != tc.want {
				t.Fatalf("%s answered %d, want %d", tc.method, ex.resp.Status, tc.want)
			}
			if tc.want == 405 {
				if called {
					t.Error("the origin was reached")
				}
				if allow := ex.resp.Header.Get("Allow"); allow == "" || strings.Contains(allow, "TRACE") || strings.Contains(allow, "CONNECT") {
					t.Errorf("Allow = %q", allow)
				}
			}
		})
	}
}
