// Command misbehave is a test worker that misbehaves on request.
package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

var sink [][]byte

// held keeps the last /alloc allocation alive.
var held []byte

func init() {
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
		case "/env":
			w.Write([]byte(sdk.Env("GREETING") + "," + sdk.Env("TOKEN")))
		case "/waituntil":
			sdk.WaitUntil(func() { sdk.KV("KV").Put("late", []byte("done")) })
			w.Write([]byte("early"))
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
			w.Write(resp.Body)
		default:
			w.Write([]byte("ok " + strconv.Itoa(len(sink))))
		}
	})
}

func main() {}
