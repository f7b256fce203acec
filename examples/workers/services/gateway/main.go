// Command gateway is the caller of the services example: it asks the auth worker, through
// the service binding AUTH, who the client is before answering, without a network hop.
//
//	GET /hello        "hello NAME" when AUTH accepts the Authorization header, its 401 when not
//	GET /spin         calls AUTH's /spin: the callee's CPU limit fails the call (502 here)
//	GET /unbound      calls a service that is not bound: 500
//	GET /loop         calls itself through the SELF binding until the depth limit: 508
//
// Its configuration:
//
//	workers:
//	  - name: gateway
//	    package: ./examples/workers/services/gateway
//	    services:
//	      - {binding: AUTH, service: auth}
//	      - {binding: SELF, service: gateway}
package main

import (
	"encoding/json"
	"errors"
	"io"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// call sends a GET for path to the service bound as binding, with the client's
// Authorization header.
func call(binding, path string, r *sdk.Request) (*sdk.Response, error) {
	req, err := sdk.NewRequest("GET", "https://"+binding+".internal"+path, nil)
	if err != nil {
		return nil, err
	}
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	return sdk.Service(binding).Fetch(req)
}

// failed answers a failed service call: 508 when the chain of calls is too deep, 502
// when the callee failed (a limit, a crash), 500 otherwise.
func failed(w sdk.ResponseWriter, err error) {
	var se *sdk.Error
	status := 500
	if errors.As(err, &se) {
		switch {
		case se.Code == sdk.ErrLimit && strings.Contains(se.Message, "chain of service calls"):
			status = 508
		case se.Code == sdk.ErrLimit || se.Code == sdk.ErrInternal:
			status = 502
		}
	}
	sdk.ErrorResponse(w, err.Error(), status)
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		switch r.Path() {
		case "/hello":
			resp, err := call("AUTH", "/check", r)
			if err != nil {
				failed(w, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				w.WriteHeader(resp.StatusCode)
				io.Copy(w, resp.Body)
				return
			}
			var who struct{ User string }
			b, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(b, &who); err != nil {
				sdk.ErrorResponse(w, "auth answered "+string(b), 502)
				return
			}
			w.Write([]byte("hello " + who.User + "\n"))
		case "/spin":
			resp, err := call("AUTH", "/spin", r)
			if err != nil {
				failed(w, err)
				return
			}
			resp.Body.Close()
			sdk.ErrorResponse(w, "auth's spin returned", 500)
		case "/unbound":
			_, err := call("NOPE", "/check", r)
			failed(w, err)
		case "/loop":
			resp, err := call("SELF", "/loop", r)
			if err != nil {
				failed(w, err)
				return
			}
			defer resp.Body.Close()
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		default:
			sdk.ErrorResponse(w, "not found", 404)
		}
	})
}

func main() {}
