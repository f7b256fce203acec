package containers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
)

// maxLogLine bounds one logged line of an instance's output; the rest is cut.
const maxLogLine = 4 << 10

// tailLines is how many last lines a failed start quotes.
const tailLines = 5

// logWriter logs an instance's output line by line and keeps its last lines.
type logWriter struct {
	log  *slog.Logger
	mu   sync.Mutex
	buf  []byte
	last []string
}

func newLogWriter(log *slog.Logger) *logWriter { return &logWriter{log: log} }

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
	w.log.Info("container output", "line", s)
	if len(w.last) == tailLines {
		copy(w.last, w.last[1:])
		w.last = w.last[:tailLines-1]
	}
	w.last = append(w.last, s)
}

// flush logs an unterminated last line.
func (w *logWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line()
	}
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
