package containers

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// records collects log records.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) count(msg string) (n int, attr int64) {
	for _, rec := range r.recs {
		if rec.Message == msg {
			n++
			rec.Attrs(func(a slog.Attr) bool {
				if a.Key == "lines" {
					attr += a.Value.Int64()
				}
				return true
			})
		}
	}
	return n, attr
}

// TestLogWriterRateLimit: an instance printing without end gets MaxLogLines lines a second
// logged, and the count of the others; the tail of a failed start keeps the last lines.
func TestLogWriterRateLimit(t *testing.T) {
	rec := &records{}
	w := newLogWriter(slog.New(rec))
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	for i := range 1000 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	if n, _ := rec.count("container output"); n != MaxLogLines {
		t.Fatalf("logged %d lines in one second, want %d", n, MaxLogLines)
	}
	if got, want := w.tail(), " (output: line 995 | line 996 | line 997 | line 998 | line 999)"; got != want {
		t.Fatalf("tail %q, want %q", got, want)
	}
	if n, dropped := rec.count("container output dropped"); n != 1 || dropped != 1000-MaxLogLines {
		t.Fatalf("dropped reported %d times, %d lines; want once, %d", n, dropped, 1000-MaxLogLines)
	}
	now = now.Add(time.Second)
	fmt.Fprintf(w, "next\n")
	if n, _ := rec.count("container output"); n != MaxLogLines+1 {
		t.Fatalf("after a second: logged %d lines, want %d", n, MaxLogLines+1)
	}
}
