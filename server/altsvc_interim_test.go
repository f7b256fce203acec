package server

import (
	"testing"

	"github.com/verge-edge/verge/message"
)

// interimRecorder records interim heads and the final head's transfer coding.
type interimRecorder struct {
	recordingExchange
	interim []int
	coding  string
}

func (r *interimRecorder) WriteInterim(status int, _ *message.Header) error {
	r.interim = append(r.interim, status)
	return nil
}

func (r *interimRecorder) WriteHeader(resp *message.Response) error {
	r.coding = resp.TransferCoding
	return r.recordingExchange.WriteHeader(resp)
}

// The Alt-Svc wrapper keeps the wrapped exchange's interim responses and a response's
// transfer coding.
func TestAltSvcKeepsInterimAndTransferCoding(t *testing.T) {
	rec := &interimRecorder{}
	h := HandlerFunc(func(ex message.ServerExchange) {
		iw, ok := ex.(message.InterimWriter)
		if !ok {
			t.Fatal("the wrapper hides InterimWriter")
		}
		if err := iw.WriteInterim(103, nil); err != nil {
			t.Error(err)
		}
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1, TransferCoding: "gzip"})
	})
	serveAltSvc(h, rec, `h3=":8443"`)
	if len(rec.interim) != 1 || rec.interim[0] != 103 || rec.coding != "gzip" {
		t.Fatalf("interim %v coding %q, want [103] and gzip", rec.interim, rec.coding)
	}
}
