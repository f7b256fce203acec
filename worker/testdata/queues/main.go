// Command queues is the worker of worker/queues_test.go: POST /send sends the lines of its
// body to the queue bound as JOBS; its queue handler reports each delivery to the queue
// bound as OUT ("<body> <attempt>") and acknowledges, retries ("retry"), fails ("fail")
// or panics ("crash") by body, or forges an acknowledgement ("forge"); GET /hostile tries what a worker must not do.
package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unsafe"

	sdk "github.com/verge-edge/verge/sdk/go"
)

//go:wasmimport verge call
func hostCall(op uint32, arg unsafe.Pointer, argLen uint32, out unsafe.Pointer, outCap uint32) uint64

// raw performs a host operation with a hand-made argument and returns its status.
func raw(op uint32, arg []byte) uint32 {
	out := make([]byte, 1024)
	return uint32(hostCall(op, unsafe.Pointer(&arg[0]), uint32(len(arg)), unsafe.Pointer(&out[0]), uint32(len(out))) >> 32)
}

func code(err error) string {
	var e *sdk.Error
	if errors.As(err, &e) {
		return fmt.Sprint(e.Code)
	}
	return fmt.Sprint(err)
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		switch r.Path() {
		case "/send":
			body, _ := io.ReadAll(r.Body)
			var msgs []sdk.MessageSendRequest
			for _, line := range strings.Fields(string(body)) {
				msgs = append(msgs, sdk.MessageSendRequest{Body: []byte(line), ContentType: "text"})
			}
			if err := sdk.Queue("JOBS").SendBatch(msgs); err != nil {
				sdk.ErrorResponse(w, err.Error(), 500)
				return
			}
			w.WriteHeader(204)
		case "/hostile":
			// An unbound queue, a batch outside a queue invocation, an oversized message.
			fmt.Fprintf(w, "unbound=%s ", code(sdk.Queue("OTHER").Send([]byte("x"), nil)))
			fmt.Fprintf(w, "ack=%s ", code((&sdk.MessageBatch{}).AckAll()))
			fmt.Fprintf(w, "big=%s", code(sdk.Queue("JOBS").Send(make([]byte, sdk.MaxQueueMessageBytes+1), nil)))
		}
	})
	sdk.HandleQueue(func(b *sdk.MessageBatch) error {
		var fail bool
		for _, m := range b.Messages {
			if err := sdk.Queue("OUT").Send([]byte(fmt.Sprintf("%s %d", m.Body, m.Attempts)), nil); err != nil {
				return err
			}
			switch string(m.Body) {
			case "retry":
				m.Retry(0)
			case "fail":
				fail = true
			case "crash":
				panic("crash")
			case "forge":
				// Indexes beyond the batch are refused: a consumer reaches only its own
				// batch's messages.
				st := raw(130, []byte{0, 1, 0, 0, 0, 0xff, 0xff, 0, 0})
				if err := sdk.Queue("OUT").Send([]byte(fmt.Sprintf("forged=%d", st)), nil); err != nil {
					return err
				}
			default:
				if err := m.Ack(); err != nil {
					return err
				}
			}
		}
		if fail {
			return errors.New("failing the batch")
		}
		return nil
	})
}

func main() {}
