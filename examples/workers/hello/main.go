// Command hello is the smallest Verge worker: it answers every request with a greeting.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm ./examples/workers/hello
package main

import sdk "github.com/verge-edge/verge/sdk/go"

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("hello from " + r.Path() + "\n"))
	})
}

func main() {}
