// Command auth is the callee of the services example: a worker that other workers call
// through a service binding, never exposed on a route itself.
//
//	GET /check   200 {"user": NAME} when the Authorization header is "Bearer <TOKEN>"
//	             (TOKEN from its env), 401 otherwise
//	GET /spin    computes until its CPU time limit stops it (the caller's call fails)
//
// Its configuration:
//
//	workers:
//	  - name: auth
//	    package: ./examples/workers/services/auth
//	    env: {TOKEN: s3cret, USER: alice}
//	    limits: {cpu_time: 50ms}
package main

import (
	"encoding/json"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// sink keeps the spin loop from being optimized away.
var sink uint64

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		switch r.Path() {
		case "/check":
			if r.Header.Get("Authorization") != "Bearer "+sdk.Env("TOKEN") {
				sdk.ErrorResponse(w, "bad token", 401)
				return
			}
			b, _ := json.Marshal(map[string]string{"user": sdk.Env("USER")})
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		case "/spin":
			for i := uint64(0); ; i++ {
				sink += i * i
			}
		default:
			sdk.ErrorResponse(w, "not found", 404)
		}
	})
}

func main() {}
