// Command objects is a test worker for Durable Objects that share instances. A request to
// /o/NAME/ACTION goes to the object NAME of class Mem (binding MEM), which answers
// "mem=M stored=S instance=I": M counts the requests this object's in-memory value served,
// S the requests its storage recorded, and I names the instance hosting it (random per
// instance). Actions: "hit" (count), "crash" (panic: the instance is lost), "call?to=OTHER"
// (count, then hit OTHER from inside this object and append its answer; with "&fan=1" a
// goroutine of the request is alive across the call, so the SDK does not let other
// invocations nest in it), "peek" (how many Mem values this instance created).
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
	if action == "call" {
		if r.URL().Query().Get("fan") == "1" {
			done := make(chan struct{})
			go func() { <-done }()
			defer close(done)
		}
		resp, err := hit(r.URL().Query().Get("to"), "hit")
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
