package h2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/message"
)

// grpcFrame is a gRPC length-prefixed message: compressed flag, 4-byte length, payload.
func grpcFrame(msg string) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// readGRPCFrame parses one length-prefixed message.
func readGRPCFrame(r io.Reader) (string, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return "", err
	}
	return string(msg), nil
}

// grpcExchange answers like a gRPC server through the neutral model: a reply message and
// grpc-status 0 in trailers, or, on /svc/Missing, a trailers-only NOT_FOUND response.
func grpcExchange(ex message.ServerExchange) {
	req := ex.Request()
	resp := &message.Response{Status: 200, ContentLength: -1}
	resp.Header.Add("content-type", "application/grpc")
	if !strings.HasPrefix(req.Header.Get("content-type"), "application/grpc") || req.Header.Get("te") != "trailers" {
		resp.Header.Add("grpc-status", "3")
		resp.Header.Add("grpc-message", "not a grpc request")
		ex.WriteHeader(resp)
		ex.Finish(nil)
		return
	}
	if req.Path() == "/svc/Missing" {
		resp.Header.Add("grpc-status", "5")
		resp.Header.Add("grpc-message", "no such thing")
		ex.WriteHeader(resp)
		ex.Finish(nil)
		return
	}
	msg, err := readGRPCFrame(req.Body)
	if err != nil {
		ex.Abort(err)
		return
	}
	io.Copy(io.Discard, req.Body)
	ex.WriteHeader(resp)
	ex.Write(grpcFrame("reply:" + msg))
	var tr message.Header
	tr.Add("grpc-status", "0")
	tr.Add("grpc-message", "")
	ex.Finish(&tr)
}

// grpcOrigin is the same service in net/http terms, for the upstream side.
func grpcOrigin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/grpc")
	if r.URL.Path == "/svc/Missing" {
		w.Header().Set("Grpc-Status", "5")
		w.Header().Set("Grpc-Message", "no such thing")
		w.WriteHeader(200)
		return
	}
	msg, err := readGRPCFrame(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	w.WriteHeader(200)
	w.Write(grpcFrame("origin:" + msg + ":" + r.Header.Get("Te")))
	w.Header().Set("Grpc-Status", "0")
	w.Header().Set("Grpc-Message", "")
}

func grpcRequest(t testing.TB, url, msg string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(grpcFrame(msg)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/grpc+proto")
	req.Header.Set("Te", "trailers")
	return req
}

func TestGRPCShapeDownstream(t *testing.T) {
	addr := serve(t, &Server{Handler: grpcExchange}, false)
	resp, err := h2Client(t, false).Do(grpcRequest(t, "http://"+addr+"/svc/Echo", "ping"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := readGRPCFrame(resp.Body)
	if err != nil || msg != "reply:ping" {
		t.Fatalf("message: got %q, %v", msg, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("grpc-status trailer: got %q, want 0", got)
	}
	if _, ok := resp.Trailer["Grpc-Message"]; !ok {
		t.Error("grpc-message trailer missing")
	}
	if resp.Header.Get("Content-Type") != "application/grpc" {
		t.Errorf("content-type: got %q", resp.Header.Get("Content-Type"))
	}
}

// TestGRPCTrailersOnlyIsOneFrame checks on the wire that a head-only response is a single
// HEADERS frame with END_STREAM carrying grpc-status, as gRPC's trailers-only form requires.
func TestGRPCTrailersOnlyIsOneFrame(t *testing.T) {
	addr := serve(t, &Server{Handler: grpcExchange}, false)
	rc := dialRaw(t, addr)
	rc.hbuf.Reset()
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/svc/Missing"}, {Name: ":authority", Value: "test"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	} {
		rc.henc.WriteField(f)
	}
	block := bytes.Clone(rc.hbuf.Bytes())
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	var resp *http2.MetaHeadersFrame
	var extra []http2.Frame
	rc.readUntil(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			resp = f
			return f.StreamEnded()
		case *http2.DataFrame:
			extra = append(extra, f)
			return f.StreamEnded()
		}
		return false
	})
	if resp == nil || !resp.StreamEnded() || len(extra) != 0 {
		t.Fatalf("got headers %v (END_STREAM %v) and %d DATA frames, want one HEADERS with END_STREAM", resp != nil, resp != nil && resp.StreamEnded(), len(extra))
	}
	fields := map[string]string{}
	for _, f := range resp.Fields {
		fields[f.Name] = f.Value
	}
	if fields[":status"] != "200" || fields["grpc-status"] != "5" || fields["grpc-message"] != "no such thing" {
		t.Errorf("fields: %v", fields)
	}
}

func TestGRPCShapeUpstream(t *testing.T) {
	srv := startOrigin(t, http.HandlerFunc(grpcOrigin), true)
	cc := dialOrigin(t, srv, ClientOptions{})
	req := &message.Request{Method: "POST", Target: "/svc/Echo", Authority: "o", ContentLength: -1,
		Body: bytes.NewReader(grpcFrame("ping"))}
	req.Header.Add("content-type", "application/grpc")
	req.Header.Add("te", "trailers")
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := readGRPCFrame(resp.Body)
	if err != nil || msg != "origin:ping:trailers" {
		t.Fatalf("message: got %q, %v", msg, err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, ok := resp.Trailer.Lookup("grpc-status"); !ok || got != "0" {
		t.Errorf("grpc-status trailer: got %q (present %v), want 0", got, ok)
	}

	req = &message.Request{Method: "POST", Target: "/svc/Missing", Authority: "o", ContentLength: -1,
		Body: bytes.NewReader(grpcFrame("ping"))}
	req.Header.Add("content-type", "application/grpc")
	resp, err = cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if got := resp.Header.Get("grpc-status"); got != "5" {
		t.Errorf("trailers-only grpc-status in head: got %q, want 5", got)
	}
}

// TestGRPCThroughBothAdapters runs a minimal proxy: downstream Server, upstream ClientConn,
// the origin behind it. Messages, trailers and trailers-only responses pass through.
func TestGRPCThroughBothAdapters(t *testing.T) {
	origin := startOrigin(t, http.HandlerFunc(grpcOrigin), false)
	cc := dialOrigin(t, origin, ClientOptions{})
	proxy := func(ex message.ServerExchange) {
		resp, err := cc.RoundTrip(context.Background(), ex.Request())
		if err != nil {
			ex.Abort(err)
			return
		}
		if err := ex.WriteHeader(resp); err != nil {
			ex.Abort(err)
			return
		}
		if resp.Body != nil {
			defer resp.Body.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					if _, werr := ex.Write(buf[:n]); werr != nil {
						ex.Abort(werr)
						return
					}
					ex.Flush()
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					ex.Abort(err)
					return
				}
			}
		}
		ex.Finish(&resp.Trailer)
	}
	addr := serve(t, &Server{Handler: proxy}, false)
	c := h2Client(t, false)

	resp, err := c.Do(grpcRequest(t, "http://"+addr+"/svc/Echo", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := readGRPCFrame(resp.Body)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || msg != "origin:hi:trailers" {
		t.Fatalf("message: got %q, %v", msg, err)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("grpc-status through the proxy: got %q, want 0", got)
	}

	resp, err = c.Do(grpcRequest(t, "http://"+addr+"/svc/Missing", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("Grpc-Status"); got != "5" || len(b) != 0 {
		t.Errorf("trailers-only through the proxy: grpc-status %q, body %d bytes; want 5 and none", got, len(b))
	}
}
