package server

import (
	"testing"

	"github.com/verge-edge/verge/message"
)

// recordingExchange records the response head it was sent.
type recordingExchange struct {
	message.ServerExchange
	got []message.Field
}

func (r *recordingExchange) WriteHeader(resp *message.Response) error {
	r.got = append(r.got[:0], resp.Header.Fields()...)
	return nil
}

func TestAltSvcAddedWithoutTouchingSharedHeader(t *testing.T) {
	shared := &message.Header{}
	shared.Add("Content-Type", "text/plain")
	const v = `h3=":8443"; ma=86400`
	rec := &recordingExchange{}
	h := HandlerFunc(func(ex message.ServerExchange) {
		if _, ok := ex.(message.Upgrader); ok {
			t.Error("a non-HTTP/1.1 exchange became an Upgrader through the wrapper")
		}
		ex.WriteHeader(&message.Response{Status: 200, Header: *shared})
	})
	serveAltSvc(h, rec, v)
	if len(rec.got) != 2 || rec.got[1].Name != "Alt-Svc" || rec.got[1].Value != v {
		t.Fatalf("head sent: got %v, want Content-Type then Alt-Svc %s", rec.got, v)
	}
	if shared.Len() != 1 {
		t.Errorf("the handler's shared header changed: %v", shared.Fields())
	}
	// An informational head and a response with its own Alt-Svc are left alone.
	h = HandlerFunc(func(ex message.ServerExchange) {
		var own message.Header
		own.Add("Alt-Svc", "clear")
		ex.WriteHeader(&message.Response{Status: 200, Header: own})
	})
	serveAltSvc(h, rec, v)
	if len(rec.got) != 1 || rec.got[0].Value != "clear" {
		t.Errorf("response with its own Alt-Svc: got %v, want it untouched", rec.got)
	}
	h204 := HandlerFunc(func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 204, Header: *shared})
	})
	direct := testing.AllocsPerRun(200, func() { h204(rec) })
	wrapped := testing.AllocsPerRun(200, func() { serveAltSvc(h204, rec, v) })
	if wrapped > direct {
		t.Errorf("allocations per exchange: %v wrapped, %v direct; want no more", wrapped, direct)
	}
}
