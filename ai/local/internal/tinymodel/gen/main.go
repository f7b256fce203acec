// Command gen writes the tiny model built by package tinymodel; package
// local runs it through go generate to refresh tiny.gguf.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/verge-edge/verge/ai/local/internal/tinymodel"
)

func main() {
	out := flag.String("o", "tiny.gguf", "output file")
	flag.Parse()
	b, err := tinymodel.Build()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatal(err)
	}
}
