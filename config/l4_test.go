package config

import (
	"strings"
	"testing"
	"time"
)

func TestL4Defaults(t *testing.T) {
	c, err := Parse("l.yaml", []byte(`
l4:
  - {address: "127.0.0.1:5432", upstream: db}
  - {name: dns, address: "127.0.0.1:5353", protocol: udp, upstream: db}
upstreams: [{name: db, servers: [{address: "127.0.0.1:1"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tcp, udp := c.L4[0], c.L4[1]
	if tcp.Name != "127.0.0.1:5432" || tcp.Protocol != "tcp" || tcp.IdleTimeout.Std() != 10*time.Minute ||
		tcp.HandshakeTimeout.Std() != 10*time.Second || tcp.MaxConns != 10000 {
		t.Errorf("tcp defaults: %+v", tcp)
	}
	if udp.IdleTimeout.Std() != time.Minute || udp.MaxConns != 1000 {
		t.Errorf("udp defaults: %+v", udp)
	}
}

func TestL4Errors(t *testing.T) {
	_, err := Parse("l.yaml", []byte(`
listeners: [{name: web, address: "127.0.0.1:8080"}]
l4:
  - {name: web, address: "127.0.0.1:8080", upstream: nope}
  - {name: a, address: "127.0.0.1:9000", protocol: sctp, upstream: tlsgroup}
  - name: b
    address: "127.0.0.1:9001"
    protocol: udp
    upstream: pp
    sni_routes: [{server_names: [x.test], upstream: plain}]
    proxy_protocol: {trusted: [10.0.0.0/8]}
  - name: c
    address: "127.0.0.1:9002"
    sni_routes:
      - {server_names: [], upstream: plain}
      - {server_names: ["bad name", x.test, X.TEST], upstream: missing}
    max_conns: -1
  - {name: d, address: "127.0.0.1:9002", upstream: plain}
  - {name: e, address: "127.0.0.1:9003", proxy_protocol: {trusted: []}, upstream: plain}
  - {name: f, address: "127.0.0.1:9004", tls: {acme: {email: a@example.com}}, upstream: plain}
upstreams:
  - {name: tlsgroup, servers: [{address: "127.0.0.1:1"}], tls: {}}
  - {name: pp, servers: [{address: "127.0.0.1:2"}], send_proxy_protocol: v2}
  - {name: plain, servers: [{address: "127.0.0.1:3"}], send_proxy_protocol: v3}
routes: [{respond: {status: 200}}]
`))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		`l4[0].name: name "web" is also an HTTP listener's`,
		"l4[0].address: address 127.0.0.1:8080 conflicts with listeners[0]",
		`l4[0].upstream: unknown upstream group "nope"`,
		`l4[1].protocol: unknown protocol "sctp" (want tcp or udp)`,
		`l4[1].upstream: group "tlsgroup" sets tls`,
		"l4[2].sni_routes: sni_routes apply to tcp listeners",
		"l4[2].proxy_protocol: proxy_protocol applies to tcp listeners",
		`l4[2].upstream: group "pp" sets send_proxy_protocol, which udp listeners do not send`,
		"l4[3].sni_routes[0].server_names: at least one server name is required",
		`l4[3].sni_routes[1].server_names[0]: invalid server name "bad name"`,
		`l4[3].sni_routes[1].server_names[2]: server name "x.test" is listed twice`,
		`l4[3].sni_routes[1].upstream: unknown upstream group "missing"`,
		"l4[3].max_conns: must not be negative",
		"l4[4].address: address 127.0.0.1:9002 conflicts with l4[3]",
		"l4[5].proxy_protocol.trusted: at least one trusted peer",
		"l4[6].tls.acme: acme applies to HTTP listeners",
		`upstreams[2].send_proxy_protocol: unknown PROXY protocol version "v3" (want v1 or v2)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing error %q in:\n%v", want, err)
		}
	}
}

func TestProxyProtocolConfig(t *testing.T) {
	c, err := Parse("p.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080", proxy_protocol: {trusted: [10.0.0.0/8, 192.0.2.1, private_ranges]}}]
routes: [{respond: {status: 200}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	pp := c.Listeners[0].ProxyProtocol
	if pp.Timeout.Std() != 5*time.Second || len(pp.TrustedPrefixes()) < 3 {
		t.Errorf("got %+v, %v", pp, pp.TrustedPrefixes())
	}
	_, err = Parse("p.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080", proxy_protocol: {trusted: [10.0.0.0/33]}}]
upstreams: [{name: q, servers: [{address: "127.0.0.1:1"}], protocol: h3, send_proxy_protocol: v1}]
routes: [{respond: {status: 200}}]
`))
	for _, want := range []string{"listeners[0].proxy_protocol.trusted[0]", "upstreams[0].send_proxy_protocol: the PROXY protocol is sent on TCP connections"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing error %q in %v", want, err)
		}
	}
}
