// Command server is the small HTTP server the containers tests run as an instance (a local
// process, or a static binary in a FROM scratch image). It listens on $PORT (default 8080).
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s args=%v\n", os.Getenv("NAME"), os.Args[1:])
	})
	http.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Printf("exiting with %d\n", code)
		os.Exit(code)
	})
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// The whole body first: once a handler of Go's HTTP/1 server writes, the rest of
		// the request body is gone.
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	})
	http.HandleFunc("/sha256", func(w http.ResponseWriter, r *http.Request) {
		// The body as it arrives: its length, its digest and how it came (chunked or
		// with a Content-Length).
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x length=%d\n", n, h.Sum(nil), r.ContentLength)
	})
	fmt.Printf("listening on %s\n", port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
