package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// containerTunnelHandshake bounds the WebSocket opening handshake with a container.
const containerTunnelHandshake = 30 * time.Second

// wsTunnel is a WebSocket connection to an object's container whose handshake the container
// accepted (101), waiting for the calling worker's 101 to the client: then the two
// connections are joined, bytes copied both ways until either side closes.
type wsTunnel struct {
	conn    net.Conn
	br      *bufio.Reader // holds bytes the container sent after its 101
	release func()        // ends the request's hold on the container
	once    sync.Once
}

// close drops the tunnel (no 101 to the client, or the join ended).
func (t *wsTunnel) close() {
	t.once.Do(func() {
		t.conn.Close()
		t.release()
	})
}

// join copies between the client's switched connection and the container until both
// directions ended, or until no byte moved for ContainerTunnelIdle; it owns both.
func (t *wsTunnel) join(client io.ReadWriteCloser) {
	proxy.Join(context.Background(), client, tunnelConn{t}, ContainerTunnelIdle)
	client.Close()
	t.close()
}

// ContainerTunnelIdle closes a WebSocket joined to a container when no byte moved either
// way for this long, as the proxy's own tunnels do (proxy.DefaultTunnelIdleTimeout): a
// silent client cannot keep the container's instance held for ever.
var ContainerTunnelIdle = proxy.DefaultTunnelIdleTimeout

// tunnelConn is the container's side of a tunnel: it reads through the tunnel's buffer
// (bytes the container sent after its 101) and writes to, half-closes and closes its
// connection.
type tunnelConn struct{ t *wsTunnel }

func (c tunnelConn) Read(p []byte) (int, error)  { return c.t.br.Read(p) }
func (c tunnelConn) Write(p []byte) (int, error) { return c.t.conn.Write(p) }
func (c tunnelConn) Close() error                { return c.t.conn.Close() }

// CloseWrite half-closes the connection to the container when it is TCP.
func (c tunnelConn) CloseWrite() error {
	if tc, ok := c.t.conn.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return errors.ErrUnsupported
}

// isWebSocketRequest reports whether an encoded request (FETCH's argument) asks for a
// WebSocket upgrade.
func isWebSocketRequest(arg []byte) bool {
	d := workerabi.Decoder{B: arg}
	d.Str()
	d.Str()
	d.Raw()
	for n := d.Count(8); n > 0 && d.Err == nil; n-- {
		name, value := d.Str(), d.Str()
		if message.EqualFold(name, "Upgrade") && message.EqualFold(value, "websocket") {
			return true
		}
	}
	return false
}

// containerTunnel serves a container fetch that asks for a WebSocket while the client's
// own handshake is pending (the calling worker's request, passed to the object): it sends
// the handshake to the container at addr and, when the container answers 101, keeps the
// connection for the calling worker's 101 (switchProtocols joins them). Any other answer
// comes back as a response, its body whole (at most InlineBody bytes). It counts as a
// subrequest and takes over release. Without hasBody the argument ends after the header (workerabi.OpContainerFetchBody:
// a handshake sends no body).
func (inv *invocation) containerTunnel(arg []byte, addr netip.AddrPort, u *wsUpgrade, release func(), hasBody bool) (uint32, []byte) {
	fail2 := func(status uint32, err error) (uint32, []byte) {
		release()
		return fail(status, err)
	}
	// A handshake is a subrequest like any container fetch (roundTripTo counts those).
	if err := inv.subrequestsLeft(); err != nil {
		return fail2(workerabi.StatusLimit, err)
	}
	inv.subrequests++
	d := workerabi.Decoder{B: arg}
	method, rawURL := d.Str(), d.Str()
	d.Raw()
	var head bytes.Buffer
	target := "/"
	if i := indexPath(rawURL); i >= 0 {
		target = rawURL[i:]
	}
	if method == "" {
		method = "GET"
	}
	if !validMethod(method) || !validTarget(target) {
		return fail2(workerabi.StatusInvalid, fmt.Errorf("container fetch: bad method or URL %.80q %.200q", method, target))
	}
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, addr)
	for n := d.Count(8); n > 0; n-- {
		name, value := d.Str(), d.Str()
		if message.EqualFold(name, "Host") || message.EqualFold(name, "Content-Length") || message.EqualFold(name, "Transfer-Encoding") {
			continue
		}
		if !validField(name) || !validField(value) {
			return fail2(workerabi.StatusInvalid, fmt.Errorf("container fetch: bad header field %q", name))
		}
		fmt.Fprintf(&head, "%s: %s\r\n", name, value)
	}
	if hasBody {
		d.Raw()
	}
	if d.Err != nil {
		return fail2(workerabi.StatusInvalid, d.Err)
	}
	head.WriteString("\r\n")
	ctx, cancel := context.WithTimeout(inv.io(), containerTunnelHandshake)
	defer cancel()
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fail2(workerabi.StatusInternal, fmt.Errorf("container fetch: %w", err))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var resp *http.Response
	var br *bufio.Reader
	if _, err = conn.Write(head.Bytes()); err == nil {
		resp, br, err = readTunnelResponse(conn)
	}
	if err != nil {
		conn.Close()
		return fail2(workerabi.StatusInternal, fmt.Errorf("container fetch: WebSocket handshake: %w", err))
	}
	if !stop() {
		conn.Close()
		return fail2(workerabi.StatusInternal, fmt.Errorf("container fetch: WebSocket handshake: %w", ctx.Err()))
	}
	conn.SetDeadline(time.Time{})
	e := &inv.e
	e.B = e.B[:0]
	e.U32(0)
	e.U32(uint32(resp.StatusCode))
	var fields [][2]string
	for name, vs := range resp.Header {
		for _, v := range vs {
			fields = append(fields, [2]string{name, v})
		}
	}
	e.U32(uint32(len(fields)))
	for _, f := range fields {
		e.Str(f[0])
		e.Str(f[1])
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, err := io.ReadAll(io.LimitReader(resp.Body, InlineBody))
		conn.Close()
		release()
		if err != nil {
			return fail(workerabi.StatusInternal, fmt.Errorf("container fetch: reading body: %w", err))
		}
		e.Bytes(body)
		return workerabi.StatusOK, e.B
	}
	t := &wsTunnel{conn: conn, br: br, release: release}
	u.mu.Lock()
	if u.used {
		u.mu.Unlock()
		t.close()
		return fail(workerabi.StatusInvalid, errors.New("the request's WebSocket was accepted already"))
	}
	u.used, u.tunnel = true, t
	u.mu.Unlock()
	e.Bytes(nil)
	return workerabi.StatusOK, e.B
}

// indexPath returns where the path of an absolute URL starts, -1 when it has none.
func indexPath(rawURL string) int {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return -1
	}
	j := strings.IndexByte(rawURL[i+3:], '/')
	if j < 0 {
		return -1
	}
	return i + 3 + j
}

// validField reports whether s holds no CR, LF or NUL (no header injection).
func validField(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return s != ""
}

// maxTunnelHead bounds the head of a container's answer to a WebSocket handshake: a
// container sending fields without end cannot make Verge buffer them.
const maxTunnelHead = 64 << 10

var errTunnelHead = fmt.Errorf("response head exceeds %d bytes", maxTunnelHead)

// readTunnelResponse reads the container's answer head from conn, at most maxTunnelHead
// bytes; the reader returned holds what follows, without limit.
func readTunnelResponse(conn io.Reader) (*http.Response, *bufio.Reader, error) {
	hl := &headLimit{r: conn, n: maxTunnelHead}
	br := bufio.NewReader(hl)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if hl.n <= 0 {
			err = errTunnelHead
		}
		return nil, nil, err
	}
	hl.lifted = true
	return resp, br, nil
}

// headLimit reads at most n bytes from r until lifted.
type headLimit struct {
	r      io.Reader
	n      int
	lifted bool
}

func (h *headLimit) Read(p []byte) (int, error) {
	if h.lifted {
		return h.r.Read(p)
	}
	if h.n <= 0 {
		return 0, errTunnelHead
	}
	if len(p) > h.n {
		p = p[:h.n]
	}
	n, err := h.r.Read(p)
	h.n -= n
	return n, err
}

// validMethod reports whether m is an HTTP method token (RFC 9110 section 9.1).
func validMethod(m string) bool {
	if m == "" || len(m) > 64 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validTarget reports whether t is an origin-form request target with no space or control
// byte (nothing that could end the request line early).
func validTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
