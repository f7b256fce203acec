// Package upstream connects Verge to origins: peers, the dialer with TLS and ALPN, the
// connection pool and the transport that sends a message.Request and streams back a
// message.Response over HTTP/1.1 or HTTP/2.
package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"time"
)

// Protocol selects the HTTP version spoken to a peer.
type Protocol uint8

const (
	// HTTP1 speaks HTTP/1.1 (the default).
	HTTP1 Protocol = iota
	// HTTP2 speaks HTTP/2: by ALPN over TLS, or h2c with prior knowledge without TLS.
	HTTP2
	// HTTP2OrHTTP1 offers h2 and http/1.1 by ALPN and uses what the peer picks (TLS only;
	// without TLS it is HTTP1).
	HTTP2OrHTTP1
	// HTTP3 speaks HTTP/3 over QUIC (UDP to Address). QUIC always uses TLS: a nil Peer.TLS
	// means TLSOptions' defaults (system roots, SNI from Address).
	HTTP3
)

func (p Protocol) String() string {
	switch p {
	case HTTP2:
		return "h2"
	case HTTP2OrHTTP1:
		return "h2,h1"
	case HTTP3:
		return "h3"
	default:
		return "h1"
	}
}

// Peer is one origin server and how to talk to it. A Peer is read-only once in use; the
// transport pools connections by Peer.Key, so two peers with equal keys share connections.
type Peer struct {
	// Address is the host:port to dial.
	Address string
	// TLS, when non-nil, makes the connection TLS.
	TLS *TLSOptions
	// Protocol is the HTTP version to speak. Zero is HTTP1.
	Protocol Protocol
	// Timeouts bound each wait; zero fields take the transport's defaults.
	Timeouts Timeouts
	// Host, when non-empty, replaces the request's Authority towards this peer.
	Host string
	// ProxyProtocol, when 1 or 2, starts every new connection to the peer with a PROXY
	// protocol header of that version naming ProxySource and ProxyDest (proxyproto.go).
	// Zero sends none.
	ProxyProtocol uint8
	// ProxySource and ProxyDest are the client's address and the address it connected to,
	// for the PROXY header; they are part of the pool key, so a connection is reused only
	// for the same client connection. Invalid ones make the header a v1 "UNKNOWN" line or a
	// v2 LOCAL command.
	ProxySource, ProxyDest netip.AddrPort
}

// TLSOptions configure TLS towards a peer.
type TLSOptions struct {
	// ServerName is sent as SNI and verified against the certificate. Empty means the host
	// part of Peer.Address.
	ServerName string
	// InsecureSkipVerify disables certificate verification. Off by default.
	InsecureSkipVerify bool
	// RootCAs verifies the peer; nil means the system roots.
	RootCAs *x509.CertPool
	// ClientCert, when non-nil, is presented to the peer (mutual TLS).
	ClientCert *tls.Certificate
	// MinVersion is the lowest TLS version accepted; zero means TLS 1.2.
	MinVersion uint16
}

// Timeouts bound the waits of one upstream exchange. Zero means the transport's default;
// a negative value means no limit.
type Timeouts struct {
	// Connect bounds dialing plus the TLS handshake. Default 5s.
	Connect time.Duration
	// Read bounds each wait for bytes from the peer (time to first response byte, then between
	// reads). Default 60s.
	Read time.Duration
	// Write bounds each write to the peer. Default 60s.
	Write time.Duration
	// Idle is how long a pooled connection may stay unused. Default 60s.
	Idle time.Duration
	// Total bounds the whole exchange including the body. Default none.
	Total time.Duration
}

// PoolKey identifies the connections that may be reused for a peer: same address, protocol and
// TLS settings (SNI, verification, CA pool and client certificate identity).
type PoolKey struct {
	Address    string
	Protocol   Protocol
	TLS        bool
	ServerName string
	Insecure   bool
	RootCAs    *x509.CertPool
	ClientCert *tls.Certificate
	MinVersion uint16
	// Proxy, ProxySource and ProxyDest are the peer's PROXY protocol settings.
	Proxy                  uint8
	ProxySource, ProxyDest netip.AddrPort
}

// Key returns the pool key of p. It does not allocate.
func (p *Peer) Key() PoolKey {
	k := PoolKey{Address: p.Address, Protocol: p.Protocol}
	if p.ProxyProtocol != 0 {
		k.Proxy, k.ProxySource, k.ProxyDest = p.ProxyProtocol, p.ProxySource, p.ProxyDest
	}
	if t := p.TLS; t != nil {
		k.TLS = true
		k.ServerName = t.ServerName
		k.Insecure = t.InsecureSkipVerify
		k.RootCAs = t.RootCAs
		k.ClientCert = t.ClientCert
		k.MinVersion = t.MinVersion
	}
	return k
}

// Scheme is "https" for a TLS or HTTP/3 peer, else "http".
func (p *Peer) Scheme() string {
	if p.TLS != nil || p.Protocol == HTTP3 {
		return "https"
	}
	return "http"
}
