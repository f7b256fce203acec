package htmlrewrite

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's CPU time so far (user + system): on a busy machine it measures
// the work better than the wall time the benchmark reports.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU milliseconds per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchPage builds an HTML page of about size bytes: a head, then repeated article blocks
// with links, images, lists and inline scripts, like a long listing page.
func benchPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Bench</title>` +
		`<link rel="stylesheet" href="/s.css"><style>body{margin:0}</style></head><body class="list">`)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, `<article id="a%d" class="item card"><h2><a href="/items/%d" title="Item %d">Item number %d</a></h2>`+
			`<img src="/img/%d.jpg" alt="picture %d" width="320" height="200">`+
			`<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore `+
			`et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud <em>exercitation</em> ullamco laboris.</p>`+
			`<ul class="tags"><li>one</li><li>two</li><li>three</li></ul><!-- item %d -->`+
			`<script>window.items && window.items.push(%d);</script></article>`+"\n", i, i, i, i, i, i, i, i)
	}
	b.WriteString(`</body></html>`)
	return b.Bytes()
}

func benchRules() *Rules {
	return NewRules().
		On("head", func(e *Element) { e.Append(`<script src="/x.js"></script>`, HTML) }).
		On("img", func(e *Element) { e.SetAttr("loading", "lazy") }).
		On(`a[href^="/items/"]`, func(e *Element) { e.SetAttr("rel", "nofollow") })
}

const benchSize = 50 << 20

var page = func() func() []byte {
	var p []byte
	return func() []byte {
		if p == nil {
			p = benchPage(benchSize)
		}
		return p
	}
}()

// BenchmarkRewrite50MB rewrites a 50 MB page fed in 32 KiB chunks; the output buffer is
// reused, as the proxy's body filter does.
func BenchmarkRewrite50MB(b *testing.B) {
	doc := page()
	r := benchRules()
	s := r.NewStream()
	out := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		for off := 0; off < len(doc); off += 32 << 10 {
			out = s.Rewrite(out[:0], doc[off:min(len(doc), off+32<<10)])
		}
		out = s.End(out[:0])
	}
	reportCPU(b, c0)
}

// BenchmarkPassThrough50MB is the baseline: the same chunks copied unchanged.
func BenchmarkPassThrough50MB(b *testing.B) {
	doc := page()
	out := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		for off := 0; off < len(doc); off += 32 << 10 {
			out = append(out[:0], doc[off:min(len(doc), off+32<<10)]...)
		}
	}
	reportCPU(b, c0)
}

// BenchmarkNoRules50MB tokenizes without selectors (the cost of tracking alone).
func BenchmarkNoRules50MB(b *testing.B) {
	doc := page()
	s := NewRules().NewStream()
	out := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		for off := 0; off < len(doc); off += 32 << 10 {
			out = s.Rewrite(out[:0], doc[off:min(len(doc), off+32<<10)])
		}
		out = s.End(out[:0])
	}
	reportCPU(b, c0)
}
