// Command counter is a Verge worker with a Durable Object and a KV namespace:
//
//	GET /counter/NAME   increments the Durable Object named NAME, answers the new value
//	PUT /kv/KEY         stores the request body under KEY in the KV namespace
//	GET /kv/KEY         answers the value stored under KEY (404 if absent)
//
// It expects the bindings COUNTER (a Durable Object namespace of class Counter) and KV:
//
//	workers:
//	  - name: counter
//	    package: ./examples/workers/counter
//	    kv: [{binding: KV, namespace: counter-kv}]
//	    durable_objects: [{binding: COUNTER, class: Counter}]
package main

import (
	"io"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// Counter is the Durable Object class: one counter per object, kept in its storage.
type Counter struct {
	state *sdk.DurableObjectState
}

// Fetch increments the stored count and answers the new value.
func (c *Counter) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	st := c.state.Storage()
	n := 0
	if v, ok, err := st.Get("count"); err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	} else if ok {
		n, _ = strconv.Atoi(string(v))
	}
	n++
	if err := st.Put("count", []byte(strconv.Itoa(n))); err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(strconv.Itoa(n)))
}

func init() {
	sdk.DefineDurableObject("Counter", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &Counter{state: s}
	})
	sdk.Serve(serve)
}

func serve(w sdk.ResponseWriter, r *sdk.Request) {
	path := r.Path()
	switch {
	case strings.HasPrefix(path, "/counter/") && r.Method == "GET":
		name := strings.TrimPrefix(path, "/counter/")
		if name == "" {
			sdk.ErrorResponse(w, "missing counter name", 400)
			return
		}
		req, _ := sdk.NewRequest("GET", "http://counter/"+name, nil)
		resp, err := sdk.DurableObject("COUNTER").IDFromName(name).Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	case strings.HasPrefix(path, "/kv/") && len(path) > len("/kv/"):
		key := strings.TrimPrefix(path, "/kv/")
		ns := sdk.KV("KV")
		switch r.Method {
		case "PUT":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 400)
				return
			}
			if err := ns.Put(key, body); err != nil {
				sdk.ErrorResponse(w, err.Error(), 500)
				return
			}
			w.WriteHeader(204)
		case "GET", "HEAD":
			v, ok, err := ns.Get(key)
			switch {
			case err != nil:
				sdk.ErrorResponse(w, err.Error(), 500)
			case !ok:
				sdk.ErrorResponse(w, "not found", 404)
			default:
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Write(v)
			}
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT")
			sdk.ErrorResponse(w, "method not allowed", 405)
		}
	default:
		sdk.ErrorResponse(w, "not found", 404)
	}
}

func main() {}
