package h2

import (
	"fmt"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/message"
)

// TestServerConnectionSpecificFieldResetsStream checks RFC 9113 section 8.2.2 on the wire:
// a request with a connection-specific field, or TE other than "trailers", is reset with
// PROTOCOL_ERROR without reaching the handler, and the connection keeps serving.
func TestServerConnectionSpecificFieldResetsStream(t *testing.T) {
	var handled atomic.Int32
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		handled.Add(1)
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}, false)
	rc := dialRaw(t, addr)
	id := uint32(1)
	for _, tc := range []struct {
		field hpack.HeaderField
		want  string // "reset" or a status
	}{
		{hpack.HeaderField{Name: "connection", Value: "close"}, "reset"},
		{hpack.HeaderField{Name: "te", Value: "trailers"}, "204"},
		{hpack.HeaderField{Name: "keep-alive", Value: "timeout=5"}, "reset"},
		{hpack.HeaderField{Name: "x-ok", Value: "1"}, "204"},
		{hpack.HeaderField{Name: "te", Value: "trailers, deflate"}, "reset"},
		{hpack.HeaderField{Name: "proxy-connection", Value: "keep-alive"}, "reset"},
		{hpack.HeaderField{Name: "transfer-encoding", Value: "chunked"}, "reset"},
		{hpack.HeaderField{Name: "upgrade", Value: "h2c"}, "reset"},
		{hpack.HeaderField{Name: "x-ok", Value: "2"}, "204"},
	} {
		before := handled.Load()
		if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{
			StreamID: id, BlockFragment: rc.headerBlock(tc.field), EndStream: true, EndHeaders: true,
		}); err != nil {
			t.Fatal(err)
		}
		var got string
		err := rc.readUntil(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if f.StreamID == id {
					got = "reset"
					if f.ErrCode != http2.ErrCodeProtocol {
						got = "reset " + f.ErrCode.String()
					}
					return true
				}
			case *http2.MetaHeadersFrame:
				if f.StreamID == id {
					got = f.PseudoValue("status")
					return true
				}
			case *http2.GoAwayFrame:
				got = "goaway " + f.ErrCode.String()
				return true
			}
			return false
		})
		if got != tc.want {
			t.Fatalf("%s: %s: got %q (err %v), want %q", tc.field.Name, tc.field.Value, got, err, tc.want)
		}
		if ran := handled.Load() != before; ran != (tc.want != "reset") {
			t.Fatalf("%s: %s: handler ran = %v", tc.field.Name, tc.field.Value, ran)
		}
		id += 2
	}

	// With a body: the DATA the client sends after the rejected HEADERS must not end the
	// connection. Then a rejected block split over HEADERS and CONTINUATION.
	block := rc.headerBlock(hpack.HeaderField{Name: "connection", Value: "close"})
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	rc.fr.WriteData(id, false, []byte("body"))
	rc.fr.WriteData(id, true, []byte("more"))
	block = rc.headerBlock(hpack.HeaderField{Name: "upgrade", Value: "websocket"})
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id + 2, BlockFragment: block[:3], EndStream: true})
	rc.fr.WriteContinuation(id+2, true, block[3:])
	rc.openStream(id+4, true)
	got := map[uint32]string{}
	err := rc.readUntil(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			// The first reset counts; DATA on a reset stream may get STREAM_CLOSED.
			if _, ok := got[f.StreamID]; !ok {
				got[f.StreamID] = f.ErrCode.String()
			}
		case *http2.MetaHeadersFrame:
			got[f.StreamID] = f.PseudoValue("status")
		case *http2.GoAwayFrame:
			got[0] = f.ErrCode.String()
			return true
		}
		return got[id] != "" && got[id+2] != "" && got[id+4] != ""
	})
	want := map[uint32]string{id: "PROTOCOL_ERROR", id + 2: "PROTOCOL_ERROR", id + 4: "204"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v (err %v), want %v", got, err, want)
	}
}

// TestServerDuplicateSettingsAppliedInOrder is h2spec 6.5.3/1: INITIAL_WINDOW_SIZE 100, then
// 1, in one frame; the last value applies, so the response's DATA comes one byte at a time.
func TestServerDuplicateSettingsAppliedInOrder(t *testing.T) {
	addr := serve(t, &Server{Handler: kibHandler}, false)
	rc := dialRaw(t, addr)
	if err := rc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1},
	); err != nil {
		t.Fatal(err)
	}
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	var acked bool
	var dataLen int = -1
	err := rc.readUntil(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.SettingsFrame:
			acked = acked || f.IsAck()
		case *http2.DataFrame:
			dataLen = len(f.Data())
			return true
		case *http2.GoAwayFrame:
			return true
		}
		return false
	})
	if !acked || dataLen != 1 {
		t.Fatalf("SETTINGS acked %v, first DATA %d bytes (err %v); want acked, 1 byte", acked, dataLen, err)
	}
}
