package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/proxyproto"
)

// ppListener reads a PROXY header at the start of each connection; a connection without
// one is dropped. RemoteAddr is the header's source.
type ppListener struct{ net.Listener }

func (l ppListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		h, rest, err := proxyproto.Read(c, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		remote := c.RemoteAddr()
		if !h.Local {
			remote = net.TCPAddrFromAddrPort(h.Src)
		}
		return &ppConn{Conn: c, r: io.MultiReader(bytes.NewReader(rest), c), remote: remote}, nil
	}
}

type ppConn struct {
	net.Conn
	r      io.Reader
	remote net.Addr
}

func (c *ppConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *ppConn) RemoteAddr() net.Addr       { return c.remote }

// TestSendProxyProtocol checks the header reaches the origin (before TLS when there is
// TLS) and the reuse rule: a pooled connection serves only the client connection its header
// named.
func TestSendProxyProtocol(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	wrap := func(s *httptest.Server) { s.Listener = ppListener{s.Listener} }
	for _, tc := range []struct {
		name    string
		version uint8
		tls     bool
	}{{"v1", 1, false}, {"v2", 2, false}, {"v2+tls", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var o *origin
			base := Peer{ProxyProtocol: tc.version}
			if tc.tls {
				o = newOrigin(t, echo, &tls.Config{}, false, wrap)
				base.TLS = &TLSOptions{RootCAs: getCA(t).pool, ServerName: "origin.test"}
			} else {
				o = newOrigin(t, echo, nil, false, wrap)
			}
			base.Address = o.ln.Addr().String()
			tr := newTestTransport(t, nil)
			dst := netip.MustParseAddrPort("198.51.100.1:443")
			send := func(src string) string {
				p := base
				p.ProxySource, p.ProxyDest = netip.MustParseAddrPort(src), dst
				resp, err := tr.RoundTrip(context.Background(), &p, get("/"))
				if err != nil {
					t.Fatal(err)
				}
				return readAll(t, resp)
			}
			steps := []struct {
				src   string
				conns int
			}{
				{"203.0.113.1:1000", 1},
				{"203.0.113.1:1000", 1}, // same client connection: reused
				{"203.0.113.2:2000", 2}, // another client: a connection of its own
				{"203.0.113.1:2000", 3}, // same address, another connection of the client
				{"203.0.113.1:1000", 3},
			}
			for i, s := range steps {
				if got := send(s.src); got != s.src {
					t.Errorf("step %d: origin saw %s, want %s", i, got, s.src)
				}
				if got := o.accepted(); got != s.conns {
					t.Errorf("step %d: %d connections accepted, want %d", i, got, s.conns)
				}
			}
		})
	}
}

func TestSendProxyProtocolLocal(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	o := newOrigin(t, echo, nil, false, func(s *httptest.Server) { s.Listener = ppListener{s.Listener} })
	tr := newTestTransport(t, nil)
	// No client addresses (a Go API user's own request): a LOCAL header, the origin keeps
	// the connection's address.
	resp, err := tr.RoundTrip(context.Background(), &Peer{Address: o.ln.Addr().String(), ProxyProtocol: 2}, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); !bytes.HasPrefix([]byte(got), []byte("127.0.0.1:")) {
		t.Errorf("origin saw %q, want the proxy's own address", got)
	}
}
