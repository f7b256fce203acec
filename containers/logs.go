package containers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// maxLogLine bounds one logged line of an instance's output; the rest is cut.
const maxLogLine = 4 << 10

// tailLines is how many last lines a failed start quotes.
const tailLines = 5

// MaxLogLines bounds the lines of one instance's output logged per second; the rest are
// counted, and the count logged ("container output dropped") when logging resumes or the
// instance exits. A container printing without end cannot flood Verge's log.
const MaxLogLines = 100

// logWriter logs an instance's output line by line and keeps its last lines.
type logWriter struct {
	log     *slog.Logger
	now     func() time.Time
	mu      sync.Mutex
	buf     []byte
	last    []string
	window  time.Time // start of the current second of MaxLogLines
	lines   int       // logged in the window
	dropped int       // not logged since the last report
}

func newLogWriter(log *slog.Logger) *logWriter { return &logWriter{log: log, now: time.Now} }

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(w.buf)
			if room > 0 {
				w.buf = append(w.buf, p[:min(room, len(p))]...)
			}
			break
		}
		room := maxLogLine - len(w.buf)
		w.buf = append(w.buf, p[:min(max(room, 0), i)]...)
		w.line()
		p = p[i+1:]
	}
	return n, nil
}

// line logs the buffered line. w.mu is held.
func (w *logWriter) line() {
	s := strings.TrimRight(string(w.buf), "\r")
	w.buf = w.buf[:0]
	if len(w.last) == tailLines {
		copy(w.last, w.last[1:])
		w.last = w.last[:tailLines-1]
	}
	w.last = append(w.last, s)
	if t := w.now(); t.Sub(w.window) >= time.Second {
		w.reportDropped()
		w.window, w.lines = t, 0
	}
	if w.lines >= MaxLogLines {
		w.dropped++
		return
	}
	w.lines++
	w.log.Info("container output", "line", s)
}

// reportDropped logs how many lines were not logged since the last report. w.mu is held.
func (w *logWriter) reportDropped() {
	if w.dropped > 0 {
		w.log.Warn("container output dropped", "lines", w.dropped, "limit_per_second", MaxLogLines)
		w.dropped = 0
	}
}

// flush logs an unterminated last line.
func (w *logWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line()
	}
	w.reportDropped()
}

// tail returns the last lines, for an error message.
func (w *logWriter) tail() string {
	w.flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.last) == 0 {
		return ""
	}
	return " (output: " + strings.Join(w.last, " | ") + ")"
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:10])
}
