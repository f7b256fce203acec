// Command server is the container image of the containers example: a small HTTP server
// that says which object's container answered. It listens on $PORT, default 8080.
//
//	GET /...     "hello from APP_NAME (boot BOOT_ID) path PATH"
//	POST /echo   echoes the request body back, streaming
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	b := make([]byte, 6)
	rand.Read(b)
	boot := hex.EncodeToString(b)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && len(r.URL.Path) >= 5 && r.URL.Path[len(r.URL.Path)-5:] == "/echo" {
			io.Copy(w, r.Body)
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
