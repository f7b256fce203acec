// Command objects is a test worker for Durable Objects that share instances. A request to
// /o/NAME/ACTION goes to the object NAME of class Mem (binding MEM), which answers
// "mem=M stored=S instance=I": M counts the requests this object's in-memory value served,
// S the requests its storage recorded, and I names the instance hosting it (random per
// instance). Actions: "hit" (count), "crash" (panic: the instance is lost), "call?to=OTHER"
// (count, then hit OTHER from inside this object and append its answer; with "&fan=1" a
// goroutine of the request is alive across the call, so the SDK does not let other
// invocations nest in it; "&act=A" sends action A instead of "hit"), "big" (a 512 KiB
// response), "bigcall?to=OTHER" (reads OTHER's "big" response and reports its length),
// "peek" (how many Mem values this instance created), "svc?to=OTHER" (count, then send
// /o/OTHER/hit through the service binding SELF, this worker bound to itself, and append
// the answer: with OTHER this object, the call comes back to it while it waits), "loop?n=N"
// (send /o/loopN+1/loop?n=N+1 through SELF and answer with its answer: an endless chain of
// service calls through objects, which the host must cut at its depth limit).
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

var instance = func() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// created counts the Mem values this instance created.
var created int

type mem struct {
	st *sdk.DurableObjectState
	n  int
}

func (m *mem) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	p := r.Path()
	action := p[strings.LastIndexByte(p, '/')+1:]
	switch action {
	case "crash":
		panic("object crashes on purpose")
	case "peek":
		fmt.Fprintf(w, "created=%d instance=%s", created, instance)
		return
	case "big":
		// 512 KiB, more than a caller may leave unread while the object streams.
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 8 {
			w.Write(chunk)
		}
		return
	case "loop":
		n, _ := strconv.Atoi(r.URL().Query().Get("n"))
		next := fmt.Sprintf("http://self/o/loop%d/loop?n=%d", n+1, n+1)
		req, _ := sdk.NewRequest("GET", next, nil)
		resp, err := sdk.Service("SELF").Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, fmt.Sprintf("loop %d: %v", n, err), 502)
			return
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	case "bigcall":
		// Calls the object ?to= for its "big" response and reports its length.
		resp, err := hit(r.URL().Query().Get("to"), "big")
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		body, err := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "got=%d err=%v", len(body), err)
		return
	}
	m.n++
	st := m.st.Storage()
	s := 0
	if v, ok, err := st.Get("n"); err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	} else if ok {
		s, _ = strconv.Atoi(string(v))
	}
	s++
	if err := st.Put("n", []byte(strconv.Itoa(s))); err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	}
	out := fmt.Sprintf("mem=%d stored=%d instance=%s", m.n, s, instance)
	if action == "svc" {
		req, _ := sdk.NewRequest("GET", "http://self/o/"+r.URL().Query().Get("to")+"/hit", nil)
		resp, err := sdk.Service("SELF").Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		out += " | " + string(body)
	}
	if action == "call" {
		if r.URL().Query().Get("fan") == "1" {
			done := make(chan struct{})
			go func() { <-done }()
			defer close(done)
		}
		act := r.URL().Query().Get("act")
		if act == "" {
			act = "hit"
		}
		resp, err := hit(r.URL().Query().Get("to"), act)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		out += " | " + string(body)
	}
	w.Write([]byte(out))
}

func hit(name, action string) (*sdk.Response, error) {
	req, _ := sdk.NewRequest("GET", "http://mem/"+action, nil)
	return sdk.DurableObject("MEM").IDFromName(name).Fetch(req)
}

func init() {
	sdk.DefineDurableObject("Mem", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		created++
		return &mem{st: s}
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		// /o/NAME/ACTION
		parts := strings.SplitN(strings.TrimPrefix(r.Path(), "/o/"), "/", 2)
		if len(parts) != 2 {
			sdk.ErrorResponse(w, "want /o/NAME/ACTION", 404)
			return
		}
		action := parts[1]
		if q := r.URL().RawQuery; q != "" {
			action += "?" + q
		}
		resp, err := hit(parts[0], action)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

func main() {}
