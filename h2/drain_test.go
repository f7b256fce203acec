package h2

import (
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A graceful shutdown goes in two steps (RFC 9113 section 6.8): a GOAWAY with the largest
// stream id and a PING; a stream the client opened before it saw that GOAWAY is served; once
// the PING is acknowledged the final GOAWAY names that stream, and the connection closes
// after it.
func TestServerShutdownTwoStepGoAway(t *testing.T) {
	srv := &Server{Handler: echoHandler}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	shut := shutdownAsync(srv, 20*time.Second)
	var first *http2.GoAwayFrame
	var ping *http2.PingFrame
	err := rc.readUntil(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if first != nil {
				t.Fatalf("second GOAWAY (last stream %d) before the PING was acknowledged", f.LastStreamID)
			}
			first = f
		case *http2.PingFrame:
			if !f.IsAck() {
				ping = f
			}
		}
		return first != nil && ping != nil
	})
	if err != nil {
		t.Fatalf("waiting for the first GOAWAY and its PING: %v", err)
	}
	if first.LastStreamID != maxStreamID || first.ErrCode != http2.ErrCodeNo {
		t.Fatalf("first GOAWAY: last stream %d, code %v; want %d and NO_ERROR", first.LastStreamID, first.ErrCode, maxStreamID)
	}
	// A request the client sent before it read the GOAWAY.
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WritePing(true, ping.Data); err != nil {
		t.Fatal(err)
	}
	var final *http2.GoAwayFrame
	status := ""
	ended := false
	rc.readUntil(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			final = f
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				if status == "" {
					status = f.PseudoValue("status")
				}
				ended = ended || f.StreamEnded()
			}
		case *http2.DataFrame:
			ended = ended || f.StreamID == 1 && f.StreamEnded()
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset with %v", f.StreamID, f.ErrCode)
		}
		return false // read until the server closes
	})
	if status != "200" || !ended {
		t.Errorf("stream opened before the client saw the GOAWAY: status %q, ended %v; want a complete 200", status, ended)
	}
	if final == nil || final.LastStreamID != 1 || final.ErrCode != http2.ErrCodeNo {
		t.Errorf("final GOAWAY: %+v, want last stream 1 with NO_ERROR", final)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// A client that never acknowledges the PING still gets the final GOAWAY, after
// drainPingTimeout, and the connection closes; also when no idle or keep-alive timeout had
// the connection's timer running.
func TestServerShutdownWithoutPingAck(t *testing.T) {
	for _, srv := range []*Server{
		{Handler: echoHandler},
		{Handler: echoHandler, IdleTimeout: -1, ReadIdleTimeout: -1},
	} {
		addr := serve(t, srv, false)
		rc := dialRaw(t, addr)
		shut := shutdownAsync(srv, 20*time.Second)
		var last []uint32
		rc.readUntil(func(f http2.Frame) bool {
			if g, ok := f.(*http2.GoAwayFrame); ok {
				last = append(last, g.LastStreamID)
			}
			return false
		})
		if len(last) != 2 || last[0] != maxStreamID || last[1] != 0 {
			t.Errorf("idle timeout %v: GOAWAY last stream ids: %v, want [%d 0]", srv.IdleTimeout, last, maxStreamID)
		}
		if err := <-shut; err != nil {
			t.Errorf("idle timeout %v: Shutdown: %v", srv.IdleTimeout, err)
		}
	}
}
