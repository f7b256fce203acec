// Command cache shows the Cache API: a worker that keeps the responses it computes in its
// own HTTP cache (sdk.Cache, sdk.OpenCache) and serves them again while they are fresh.
//
//	verge dev examples/workers/cache
//	curl -i localhost:8787/api/hello        # X-Cache: MISS, then HIT for 60 seconds
//	curl -i -X DELETE localhost:8787/api/hello
//
// /api/<path> computes a response (Cache-Control: max-age=60, an ETag), stores it with Put
// and answers later requests from Match: conditional requests get 304 and Range requests
// 206 from the cache. /named/<cache>/<path> does the same in a named cache. /probe?url=U
// looks U up in this worker's default cache (another worker's entries are not visible).
// /origin/<path> answers plainly with Cache-Control: max-age=60, for a route that caches
// the worker's responses itself (routes[].cache).
package main

import (
	"fmt"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// computed counts the responses this instance computed (not served from a cache).
var computed int

func compute(r *sdk.Request) *sdk.Response {
	computed++
	body := fmt.Sprintf("computed %s (#%d)\n", r.Path(), computed)
	resp := &sdk.Response{StatusCode: 200}
	resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp.Header.Set("Cache-Control", "max-age=60")
	resp.Header.Set("ETag", strconv.Quote("v"+strconv.Itoa(computed)))
	resp.Body = nopCloser{strings.NewReader(body)}
	return resp
}

func serveCached(w sdk.ResponseWriter, r *sdk.Request, c *sdk.HTTPCache) {
	if r.Method == "DELETE" {
		key := *r
		key.Method = "GET"
		ok, err := c.Delete(&key)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "deleted: %v\n", ok)
		return
	}
	if resp, ok := c.Match(r); ok {
		w.Header().Set("X-Cache", "HIT")
		send(w, resp)
		return
	}
	resp := compute(r)
	if err := c.Put(r, resp); err != nil {
		sdk.Log(sdk.LevelWarn, "cache put: %v", err)
	}
	w.Header().Set("X-Cache", "MISS")
	send(w, resp)
}

func send(w sdk.ResponseWriter, resp *sdk.Response) {
	for _, f := range resp.Header.Fields() {
		w.Header().Add(f.Name, f.Value)
	}
	w.WriteHeader(resp.StatusCode)
	if resp.Body != nil {
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		p := r.Path()
		switch {
		case strings.HasPrefix(p, "/api/"):
			serveCached(w, r, sdk.Cache())
		case strings.HasPrefix(p, "/named/"):
			name, _, _ := strings.Cut(strings.TrimPrefix(p, "/named/"), "/")
			serveCached(w, r, sdk.OpenCache(name))
		case p == "/probe":
			req, err := sdk.NewRequest("GET", r.URL().Query().Get("url"), nil)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 400)
				return
			}
			if r.Method == "DELETE" {
				ok, err := sdk.Cache().Delete(req)
				fmt.Fprintf(w, "deleted: %v %v\n", ok, err)
				return
			}
			if resp, ok := sdk.Cache().Match(req); ok {
				w.Header().Set("X-Cache", "HIT")
				send(w, resp)
				return
			}
			sdk.ErrorResponse(w, "not in this worker's cache", 404)
		case strings.HasPrefix(p, "/origin/"):
			computed++
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "origin %s (#%d)\n", p, computed)
		default:
			sdk.ErrorResponse(w, "try /api/<path>", 404)
		}
	})
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func main() {}
