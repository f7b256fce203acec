// Command containers is a test worker for the container operations (worker/containers_test.go):
//
//	/plain/fetch               a container fetch outside any Durable Object
//	/pool                      a request to one of 2 objects of class F (sdk.DefineContainer)
//	/obj/CLASS/NAME/ACTION     runs ACTION in object NAME of binding CLASS (C or D; F passes
//	                           the request to its container):
//	  id        the object's ID
//	  start     starts its container with NAME in NAME and the argument a1
//	  fetch     fetches / from its container
//	  state     its container's state
//	  stop      stops its container
//	  wsloop    sends WebSocket handshakes to the container until the subrequest limit
//	  steal     fetches http://ADDR/ (query addr) with a plain subrequest
//	  hugeenv   starts its container with 100 variables
//	  sha256    passes the request to its container's /sha256 (its body streams); with
//	            query skip=N it reads N bytes of the body first, with copy=1 it passes
//	            a copy of the body (read whole by the SDK)
package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

type obj struct {
	s *sdk.DurableObjectState
	c *sdk.Container
}

func (o *obj) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	parts := strings.Split(strings.TrimPrefix(r.Path(), "/obj/"), "/")
	name, action := parts[1], parts[2]
	var err error
	switch action {
	case "id":
		w.Write([]byte(o.s.ID()))
		return
	case "start":
		err = o.c.Start(&sdk.ContainerStartOptions{Env: map[string]string{"NAME": name}, Args: []string{"a1"}})
	case "fetch":
		req, _ := sdk.NewRequest("GET", "http://container/", nil)
		var resp *sdk.Response
		if resp, err = o.c.Fetch(req); err == nil {
			io.Copy(w, resp.Body)
			return
		}
	case "state":
		var s sdk.ContainerState
		if s, err = o.c.State(); err == nil {
			w.Write([]byte(s.String()))
			return
		}
	case "stop":
		err = o.c.Stop()
	case "wsloop":
		// WebSocket handshakes to the container, which answers them with 200, until one
		// fails: each is a subrequest.
		n := 0
		for ; n < 1000; n++ {
			req, _ := sdk.NewRequest("GET", "http://container/", nil)
			req.Header.Set("Upgrade", "websocket")
			var resp *sdk.Response
			if resp, err = o.c.Fetch(req); err != nil {
				break
			}
			resp.Body.Close()
		}
		fmt.Fprintf(w, "%d handshakes, then: %v", n, err)
		return
	case "steal":
		req, _ := sdk.NewRequest("GET", "http://"+r.URL().Query().Get("addr")+"/", nil)
		var resp *sdk.Response
		if resp, err = sdk.Fetch(req); err == nil {
			io.Copy(w, resp.Body)
			return
		}
	case "sha256":
		q := r.URL().Query()
		if n, _ := strconv.Atoi(q.Get("skip")); n > 0 {
			io.ReadFull(r.Body, make([]byte, n))
		}
		body := r.Body
		if q.Get("copy") == "1" {
			body = io.MultiReader(r.Body)
		}
		req, _ := sdk.NewRequest("POST", "http://container/sha256", body)
		var resp *sdk.Response
		if resp, err = o.c.Fetch(req); err == nil {
			io.Copy(w, resp.Body)
			return
		}
	case "hugeenv":
		env := map[string]string{}
		for i := range 100 {
			env[fmt.Sprintf("V%d", i)] = "x"
		}
		err = o.c.Start(&sdk.ContainerStartOptions{Env: env})
	}
	if err != nil {
		fmt.Fprintf(w, "error: %v", err)
		return
	}
	w.Write([]byte("ok"))
}

func init() {
	for _, class := range []string{"C", "D"} {
		sdk.DefineDurableObject(class, func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
			return &obj{s: s, c: s.Container()}
		})
	}
	sdk.DefineContainer("F")
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		p := r.Path()
		if p == "/pool" {
			resp, err := sdk.ContainerPool("F", 2).Fetch(r)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			sdk.WriteResponse(w, resp)
			return
		}
		if p == "/plain/fetch" {
			req, _ := sdk.NewRequest("GET", "http://container/", nil)
			if _, err := new(sdk.Container).Fetch(req); err != nil {
				fmt.Fprintf(w, "error: %v", err)
				return
			}
			w.Write([]byte("reached a container"))
			return
		}
		parts := strings.Split(strings.TrimPrefix(p, "/obj/"), "/")
		if len(parts) != 3 {
			sdk.ErrorResponse(w, "bad path", 404)
			return
		}
		resp, err := sdk.DurableObject(parts[0]).IDFromName(parts[1]).Fetch(r)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		sdk.WriteResponse(w, resp)
	})
}

func main() {}
