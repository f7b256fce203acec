// Command waits is a Verge worker whose Durable Object requests wait (in a subrequest, a
// call to another object, sdk.Sleep or time.Sleep) while other requests to the same object
// run: the input gate semantics of docs/workers.md ("Input and output gates").
//
//	GET /OBJ/wait?name=N&u=URL    writes before-N, fetches URL, reports what it finds after
//	GET /OBJ/quick?name=N&of=M    reports before-M, writes quick=N
//	GET /OBJ/sleep?name=N&ms=MS   sdk.Sleep (the gate opens), or time.Sleep with &go=1 (it does not)
//	GET /OBJ/call?name=N&to=OBJ2&next=PATH&nq=QUERY   calls OBJ2's PATH?QUERY and wraps its answer
//	GET /OBJ/log                  the order in which the object's requests began and ended
//	GET /OBJ/crash                panics (the instance is lost)
//	GET /OBJ/alarm?ms=MS          sets the alarm, whose handler sleeps 1 s with sdk.Sleep
//	&fan=1 on /sleep              keeps a goroutine alive across the wait (the gate stays closed)
//
// OBJ names a Durable Object of the ROOM binding (class Room):
//
//	workers:
//	  - name: waits
//	    module: waits.wasm
//	    durable_objects: [{binding: ROOM, class: Room}]
//	    fetch: {allow: ["127.0.0.1"]}   # only for a subrequest to a local origin
package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

type room struct {
	state *sdk.DurableObjectState
	// log records the order in which requests began and ended, in memory.
	log []string
}

func (o *room) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	q := r.URL().Query()
	name := q.Get("name")
	st := o.state.Storage()
	o.log = append(o.log, "begin "+name)
	switch r.Path() {
	case "/wait":
		// Writes before the wait, waits in a subrequest, then reports what it finds.
		if err := st.Put("before-"+name, []byte("1")); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		req, _ := sdk.NewRequest("GET", q.Get("u"), nil)
		resp, err := sdk.Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, "fetch: "+err.Error(), 502)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		other, _, _ := st.Get("quick")
		if err := st.Put("after-"+name, []byte("1")); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s origin=%s quick=%s path=%s", name, body, other, r.Path())
	case "/quick":
		before, _, _ := st.Get("before-" + q.Get("of"))
		if err := st.Put("quick", []byte(name)); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s before=%s", name, before)
	case "/sleep":
		ms, _ := strconv.Atoi(q.Get("ms"))
		if q.Get("fan") == "1" {
			// A goroutine of this request is alive across the wait: the SDK then keeps
			// the gate closed (docs/workers.md, Input and output gates).
			done := make(chan struct{})
			go func() { <-done }()
			defer close(done)
		}
		if q.Get("go") == "1" {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		} else {
			sdk.Sleep(time.Duration(ms) * time.Millisecond)
		}
		fmt.Fprintf(w, "%s slept", name)
	case "/call":
		// Calls another object (or this one) by name, which may call back.
		ns := sdk.DurableObject("ROOM")
		req, _ := sdk.NewRequest("GET", "http://do/"+strings.TrimPrefix(q.Get("next"), "/")+"?"+q.Get("nq"), nil)
		resp, err := ns.IDFromName(q.Get("to")).Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, "call: "+err.Error(), 502)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "%s<-[%s]", name, body)
	case "/crash":
		panic("crash requested")
	case "/alarm":
		ms, _ := strconv.Atoi(q.Get("ms"))
		if err := st.SetAlarm(time.Now().Add(time.Duration(ms) * time.Millisecond)); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, "set")
	case "/log":
		fmt.Fprint(w, strings.Join(o.log, ","))
	default:
		sdk.ErrorResponse(w, "not found", 404)
	}
	o.log = append(o.log, "end "+name)
}

// Alarm waits in sdk.Sleep, so requests run while it waits (alarms pass the input gate
// like requests).
func (o *room) Alarm(sdk.AlarmInfo) error {
	o.log = append(o.log, "begin alarm")
	sdk.Sleep(time.Second)
	o.log = append(o.log, "end alarm")
	return nil
}

func init() {
	sdk.DefineDurableObject("Room", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler { return &room{state: s} })
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		// /<object>/<path>?query goes to the object named <object>.
		p := strings.TrimPrefix(r.Path(), "/")
		obj, rest, _ := strings.Cut(p, "/")
		ns := sdk.DurableObject("ROOM")
		req, _ := sdk.NewRequest(r.Method, "http://do/"+rest+"?"+r.URL().RawQuery, r.Body)
		resp, err := ns.IDFromName(obj).Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

func main() {}
