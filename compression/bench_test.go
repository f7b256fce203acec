package compression

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge/message"
)

// BenchmarkEncoder is the body filter's cost per response: Start, the body in 16 KiB
// chunks, the end, Release, with pooled encoders (the steady state of a busy route).
func BenchmarkEncoder(b *testing.B) {
	for _, alg := range []Algorithm{Gzip, Brotli, Zstd} {
		for _, level := range []int{1, 5} {
			for _, size := range []int{1 << 10, 100 << 10} {
				b.Run(fmt.Sprintf("%v/level%d/%dKiB", alg, level, size>>10), func(b *testing.B) {
					p, err := NewPolicy([]string{alg.Token()}, level, -1, nil)
					if err != nil {
						b.Fatal(err)
					}
					body := corpus(b, size)
					req := &message.Request{Method: "GET"}
					req.Header.Add("Accept-Encoding", "gzip, br, zstd")
					var r message.Response
					b.SetBytes(int64(size))
					b.ReportAllocs()
					out := 0
					for b.Loop() {
						r.Reset()
						r.Status, r.ContentLength = 200, int64(size)
						r.Header.Add("Content-Type", "text/html")
						var e Encoder
						e.Start(p, req, &r)
						for i := 0; i < size; i += 16 << 10 {
							chunk, err := e.Body(body[i:min(i+16<<10, size)], false, false)
							if err != nil {
								b.Fatal(err)
							}
							out += len(chunk)
						}
						chunk, _ := e.Body(nil, false, true)
						out += len(chunk)
						e.Release()
					}
					b.ReportMetric(float64(out)/float64(b.N)/float64(size), "ratio")
				})
			}
		}
	}
}

func BenchmarkNegotiate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Negotiate("gzip, deflate, br, zstd", DefaultAlgorithms)
	}
}

// corpus is size bytes of real text: the repository's documentation, which compresses
// like web pages do (about 3:1 with gzip), unlike a repeated sentence.
func corpus(b *testing.B, size int) []byte {
	files, _ := filepath.Glob("../docs/*.md")
	var out []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			out = append(out, data...)
		}
		if len(out) >= size {
			return out[:size]
		}
	}
	b.Fatalf("not enough text under ../docs for %d bytes", size)
	return nil
}
