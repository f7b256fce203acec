// Command stream is an example worker that streams its responses.
//
//	GET /ticks?n=5&ms=1000   writes "tick 1" ... "tick n", flushing each one at once and
//	                         pausing ms milliseconds between them (server-sent events style);
//	                         with flush=0 it does not flush, and the ticks leave together
//	GET /proxy?url=URL       passes the response of URL through as it arrives, in bounded
//	                         memory whatever its size (URL must be allowed by fetch.allow
//	                         unless it is on the public internet)
//
// Run it with `verge dev examples/workers/stream` and watch `curl -N localhost:8787/ticks`.
package main

import (
	"io"
	"strconv"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

func ticks(w sdk.ResponseWriter, r *sdk.Request) {
	q := r.URL().Query()
	n, _ := strconv.Atoi(q.Get("n"))
	if n <= 0 || n > 100 {
		n = 5
	}
	ms, _ := strconv.Atoi(q.Get("ms"))
	if ms < 0 || ms > 5000 {
		ms = 1000
	}
	flush := q.Get("flush") != "0"
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	for i := 1; i <= n; i++ {
		if i > 1 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		w.Write([]byte("data: tick " + strconv.Itoa(i) + "\n\n"))
		if flush {
			w.(sdk.Flusher).Flush() // this tick leaves now, not with the next 32 KiB
		}
	}
}

func proxy(w sdk.ResponseWriter, r *sdk.Request) {
	req, err := sdk.NewRequest("GET", r.URL().Query().Get("url"), nil)
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 400)
		return
	}
	resp, err := sdk.Fetch(req)
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 502)
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	// The body streams from the host; the SDK's writer flushes each piece as it arrives.
	io.Copy(w, resp.Body)
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		switch r.Path() {
		case "/ticks":
			ticks(w, r)
		case "/proxy":
			proxy(w, r)
		default:
			sdk.ErrorResponse(w, "try /ticks or /proxy?url=...", 404)
		}
	})
}

func main() {}
