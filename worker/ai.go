package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/internal/workerabi"
)

// AIBinding is a worker's AI binding: the providers its configuration grants.
type AIBinding struct {
	// Name is the binding's name in the guest (sdk.AI(name)).
	Name string
	// Client reaches the granted providers. Required. The version deployed with the binding
	// closes it (its idle connections) when the version is released, so each deployment
	// should get a client of its own.
	Client *ai.Client
	// Key identifies the providers' configuration, so that a redeploy happens when it
	// changes (configHash).
	Key string
}

// Limits of the AI binding.
const (
	// MaxAIRequest bounds the JSON body of one AI request.
	MaxAIRequest = 1 << 20
	// MaxAIResponse bounds a non-streamed answer, returned whole.
	MaxAIResponse = 8 << 20
)

// aiRun serves workerabi.OpAIRun.
func (inv *invocation) aiRun(arg []byte) (uint32, []byte) {
	v := inv.inst.v
	d := workerabi.Decoder{B: arg}
	binding := d.Str()
	path := d.Str()
	body := d.Raw()
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if v.ai == nil || v.ai.Name != binding {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("no AI binding %q", binding))
	}
	switch path {
	case "/chat/completions", "/completions", "/embeddings":
	default:
		return fail(workerabi.StatusInvalid, fmt.Errorf("ai: unknown path %q (want /chat/completions, /completions or /embeddings)", path))
	}
	if len(body) > MaxAIRequest {
		return fail(workerabi.StatusLimit, fmt.Errorf("ai: request of %d bytes exceeds %d", len(body), MaxAIRequest))
	}
	var head struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.Model == "" {
		return fail(workerabi.StatusInvalid, errors.New("ai: the request must be a JSON object with a model"))
	}
	if err := inv.subrequestsLeft(); err != nil {
		return fail(workerabi.StatusLimit, err)
	}
	if inv.streams.full() {
		return fail(workerabi.StatusLimit, fmt.Errorf("too many open response bodies (limit %d): read them to the end or close them", MaxOpenBodies))
	}
	inv.subrequests++
	// The wall time limit bounds the call (inv.io); the providers' timeouts bound each try.
	res, err := v.ai.Client.Do(inv.io(), ai.Call{Path: path, Model: head.Model, Body: bytes.Clone(body)})
	if err != nil {
		var ae *ai.Error
		if errors.As(err, &ae) && ae.Status == 503 {
			return fail(workerabi.StatusLimit, err)
		}
		return fail(workerabi.StatusUnavailable, err)
	}
	e := &inv.e
	e.B = e.B[:0]
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		e.U32(inv.streams.add(res))
		e.Str(res.Provider)
		e.U32(uint32(res.Status))
		e.Bytes(nil)
		return workerabi.StatusOK, e.B
	}
	data, err := io.ReadAll(io.LimitReader(res, MaxAIResponse+1))
	res.Close()
	if err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("ai: provider %s: reading the response: %w", res.Provider, err))
	}
	if len(data) > MaxAIResponse {
		return fail(workerabi.StatusLimit, fmt.Errorf("ai: provider %s: response larger than %d bytes", res.Provider, MaxAIResponse))
	}
	e.U32(0)
	e.Str(res.Provider)
	e.U32(uint32(res.Status))
	e.Bytes(data)
	return workerabi.StatusOK, e.B
}
