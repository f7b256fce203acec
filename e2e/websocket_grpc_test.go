package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/verge-edge/verge/upstream"
)

func TestWebSocketThroughProxy(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(origin.Close)
	v := startVerge(t, peerFor(origin), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+v.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, m := range []string{"one", "two", string(make([]byte, 100_000))} {
		if err := c.Write(ctx, websocket.MessageBinary, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+m {
			t.Fatalf("got %d bytes, want echo of %d bytes", len(got), len(m))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake through the proxy: %v", err)
	}
}

// gRPC end to end: a grpc-go client speaks h2c to Verge, which speaks h2c to a grpc-go server:
// unary calls, server streaming, and errors carried in trailers.
func TestGRPCThroughProxy(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("verge", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	peer := &upstream.Peer{Address: ln.Addr().String(), Protocol: upstream.HTTP2}
	v := startVerge(t, peer, nil)

	cc, err := grpc.NewClient(v.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	res, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "verge"})
	if err != nil {
		t.Fatalf("unary call: %v", err)
	}
	if res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", res.Status)
	}

	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: got %v, want NotFound carried in trailers", err)
	}

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "verge"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first streamed message: %v %v", first, err)
	}
	hs.SetServingStatus("verge", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second streamed message: %v %v", second, err)
	}
}

// gRPC over h2c to Verge and h2c from Verge to a net/http-based gRPC-shaped origin that checks
// the TE: trailers request header survived the hop.
func TestTETrailersForwarded(t *testing.T) {
	origin := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-TE", r.Header.Get("Te"))
		w.WriteHeader(200)
	}), &http2.Server{}))
	t.Cleanup(origin.Close)
	peer := &upstream.Peer{Address: origin.Listener.Addr().String(), Protocol: upstream.HTTP2}
	v := startVerge(t, peer, nil)
	req, _ := http.NewRequest("GET", "http://"+v.addr+"/", nil)
	req.Header.Set("TE", "trailers")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-TE"); got != "trailers" {
		t.Fatalf("origin saw TE %q, want trailers", got)
	}
}
