// Command server is the container image of the containers example: a small HTTP server
// that says which object's container answered. It listens on $PORT, default 8080.
//
//	GET /...     "hello from APP_NAME (boot BOOT_ID) path PATH"
//	POST /echo   echoes the request body back (up to 64 MiB)
//	POST /sha256 reads the request body as it arrives (any size) and answers
//	             "BYTES SHA256-HEX"
//	GET .../ws   a WebSocket that answers each text message with "APP_NAME: message"
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/coder/websocket"
)

// maxEcho bounds the body POST /echo reads.
const maxEcho = 64 << 20

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	b := make([]byte, 6)
	rand.Read(b)
	boot := hex.EncodeToString(b)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/echo") {
			// Read the whole body before answering: once a handler of Go's HTTP/1 server
			// writes, the rest of the request body is gone (it would echo 512 bytes of a
			// 10 KB body).
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEcho))
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(b)
			return
		}
		if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/sha256") {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/ws") {
			serveWS(w, r)
			return
		}
		fmt.Fprintf(w, "hello from %s (boot %s) path %s\n", os.Getenv("APP_NAME"), boot, r.URL.Path)
	})
	fmt.Printf("container of %s listening on %s (boot %s)\n", os.Getenv("APP_NAME"), port, boot)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

// serveWS answers each text message of a WebSocket with the object's name and the message.
func serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	name := os.Getenv("APP_NAME")
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, []byte(name+": "+string(msg))); err != nil {
			return
		}
	}
}
