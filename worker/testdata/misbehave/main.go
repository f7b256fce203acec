// Command misbehave is a test worker that misbehaves on request.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

var sink [][]byte

// bomb is a Durable Object class whose every request panics.
type bomb struct{}

func (bomb) Fetch(sdk.ResponseWriter, *sdk.Request) { panic("durable object panics on purpose") }

// attack is a Durable Object class that runs its request body as SQL (bound as SQLDO by
// the sandbox tests).
type attack struct{ st *sdk.Storage }

func (a *attack) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	q, _ := io.ReadAll(r.Body)
	c, err := a.st.SQL(string(q))
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 400)
		return
	}
	fmt.Fprintf(w, "%d rows", len(c.Rows))
}

// held keeps the last /alloc allocation alive.
var held []byte

// served counts the /count requests this instance served: it restarts at 1 in a new
// instance, which shows whether a warm instance was kept.
var served int

func init() {
	sdk.DefineDurableObject("Bomb", func(*sdk.DurableObjectState) sdk.DurableObjectHandler { return bomb{} })
	sdk.DefineDurableObject("Attack", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &attack{st: s.Storage()}
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		p := r.Path() // the last segment selects the behaviour: /x/loop acts as /loop
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			p = p[i:]
		}
		switch p {
		case "/loop":
			n := 0
			for {
				n++
			}
		case "/spin":
			// A bounded computation: n iterations of arithmetic the compiler cannot drop.
			n, _ := strconv.Atoi(r.URL().Query().Get("n"))
			x := uint64(1)
			for i := 0; i < n; i++ {
				x = x*6364136223846793005 + 1442695040888963407
			}
			w.Write([]byte("spun " + strconv.FormatUint(x>>60, 10)))
		case "/ws-spin":
			// A WebSocket whose every message is a number of spin iterations (answered
			// "spun"), or "loop" (never answered: the CPU limit must stop it).
			ws, err := sdk.AcceptWebSocket(w, r)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 426)
				return
			}
			for {
				m, err := ws.Receive()
				if err != nil {
					return
				}
				if m.Text() == "loop" {
					n := 0
					for {
						n++
					}
				}
				n, _ := strconv.Atoi(m.Text())
				x := uint64(1)
				for i := 0; i < n; i++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
				ws.SendText("spun " + strconv.FormatUint(x>>60, 10))
			}
		case "/alloc":
			// Allocates and touches mb MiB, kept until the next /alloc, so that the
			// instance's linear memory grows by as much.
			mb, _ := strconv.Atoi(r.URL().Query().Get("mb"))
			b := make([]byte, mb<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			held = b
			w.Write([]byte("allocated " + strconv.Itoa(mb)))
		case "/count":
			served++
			w.Write([]byte("count " + strconv.Itoa(served)))
		case "/hold":
			// Allocates and touches mb MiB and keeps it for ms milliseconds: a request that
			// holds memory while it runs.
			mb, _ := strconv.Atoi(r.URL().Query().Get("mb"))
			ms, _ := strconv.Atoi(r.URL().Query().Get("ms"))
			b := make([]byte, mb<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
			w.Write([]byte("held " + strconv.Itoa(len(b)>>20)))
		case "/stream":
			// More than the SDK buffers: the head goes out before the end, length unknown.
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(strings.Repeat("x", 64<<10)))
			w.Write([]byte("end"))
		case "/kvlist":
			res, err := sdk.KV("KV").List(sdk.KVListOptions{Cursor: r.URL().Query().Get("cursor")})
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 400)
				return
			}
			w.Write([]byte("keys " + strconv.Itoa(len(res.Keys))))
		case "/panic":
			panic("worker panics on purpose")
		case "/oom":
			// More than the instance's memory limit at once: the Go runtime cannot grow
			// linear memory and dies with "fatal error: out of memory".
			sink = append(sink, make([]byte, 256<<20))
		case "/exit":
			os.Exit(3)
		case "/sleep":
			time.Sleep(10 * time.Second)
		case "/sql":
			body, _ := io.ReadAll(r.Body)
			req, _ := sdk.NewRequest("POST", "http://object/sql", bytes.NewReader(body))
			resp, err := sdk.DurableObject("SQLDO").IDFromName(r.URL().Query().Get("o")).Fetch(req)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		case "/env":
			w.Write([]byte(sdk.Env("GREETING") + "," + sdk.Env("TOKEN")))
		case "/waituntil":
			sdk.WaitUntil(func() { sdk.KV("KV").Put("late", []byte("done")) })
			w.Write([]byte("early"))
		case "/dopanic":
			req, _ := sdk.NewRequest("GET", "http://bomb/", nil)
			if _, err := sdk.DurableObject("BOMB").IDFromName("b").Fetch(req); err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			w.Write([]byte("no failure"))
		case "/fetch":
			req, err := sdk.NewRequest("GET", r.URL().Query().Get("u"), nil)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 400)
				return
			}
			n, _ := strconv.Atoi(r.URL().Query().Get("n"))
			var resp *sdk.Response
			for range max(n, 1) {
				if resp, err = sdk.Fetch(req); err != nil {
					break
				}
			}
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		default:
			w.Write([]byte("ok " + strconv.Itoa(len(sink))))
		}
	})
}

func main() {}
