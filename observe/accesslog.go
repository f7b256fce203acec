package observe

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Access log buffering: lines are collected and written when this many bytes are pending or
// when the oldest pending line is this old.
const (
	accessLogBufferSize    = 32 << 10
	accessLogFlushInterval = 100 * time.Millisecond
	// maxPooledLine is the largest line buffer kept for reuse; longer ones are dropped so one
	// huge request does not pin memory.
	maxPooledLine = 16 << 10
	// errorReportInterval rate-limits reports of failed log writes.
	errorReportInterval = 10 * time.Second
)

// AccessLogConfig configures an AccessLog. The zero value logs every field as JSON to
// standard output.
type AccessLogConfig struct {
	// Output is "stdout", "stderr" or a file path, opened for appending (created with mode
	// 0644 when missing) and reopened by AccessLog.Reopen. Empty means "stdout".
	Output string
	// Format is "json" (one JSON object per line), "text" (logfmt: key=value pairs
	// separated by spaces, values quoted when needed), "combined" (CombinedTemplate) or
	// "template" (Template). Empty means "json".
	Format string
	// Template is the line of format "template": text with {field} names (TemplateFields);
	// "{{" and "}}" write braces. Fields is ignored with a template.
	Template string
	// Fields lists the fields to log, in order, by name (see AccessLogFields). Empty means
	// all of them; an unknown or repeated name is an error.
	Fields []string
	// Writer, when non-nil, receives the lines instead of Output (for embedding and tests).
	Writer io.Writer
	// Logger receives reports of failed writes, at most one every 10 seconds. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// AccessLog writes one line per request. Lines are encoded without allocation into pooled
// buffers and written in batches: when 32 KiB are pending, 100 ms after the first pending
// line, on Flush, on Reopen and on Close. It is safe for concurrent use.
type AccessLog struct {
	fields []field
	// aiFields, with the default field set, are the fields of ai_gateway requests' records:
	// fields and the ai_* ones. Nil when fields were chosen.
	aiFields []field
	json     bool
	tmpl     []tmplPart // combined and template formats; nil otherwise
	out      *output
	logger   *slog.Logger

	mu        sync.Mutex
	buf       []byte // pending lines
	timer     *time.Timer
	armed     bool // timer is running for the pending lines
	closed    bool
	failed    uint64 // lines lost since the last report
	lastError time.Time
}

// NewAccessLog validates cfg and opens its output.
func NewAccessLog(cfg AccessLogConfig) (*AccessLog, error) {
	fs, err := parseFields(cfg.Fields)
	if err != nil {
		return nil, err
	}
	a := &AccessLog{fields: fs, logger: cfg.Logger}
	if len(cfg.Fields) == 0 {
		a.aiFields, a.fields = fs, fs[:numBaseFields]
	}
	switch cfg.Format {
	case "", "json":
		a.json = true
	case "text":
	case "combined":
		a.tmpl, _ = parseTemplate(CombinedTemplate)
	case "template":
		if a.tmpl, err = parseTemplate(cfg.Template); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf(`access log: format must be "json", "text", "combined" or "template", got %q`, cfg.Format)
	}
	if a.logger == nil {
		a.logger = slog.Default()
	}
	if cfg.Writer != nil {
		a.out = &output{w: cfg.Writer}
	} else if a.out, err = openOutput(cfg.Output, "stdout"); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	a.buf = make([]byte, 0, accessLogBufferSize)
	a.timer = time.AfterFunc(time.Hour, a.flushTimer)
	a.timer.Stop()
	return a, nil
}

// lineBuf is a pooled encoding buffer.
type lineBuf struct{ b []byte }

var linePool = sync.Pool{New: func() any { return &lineBuf{b: make([]byte, 0, 1024)} }}

// Log writes rec as one line. It encodes rec before returning, so rec may be reused. After
// Close, Log does nothing.
func (a *AccessLog) Log(rec *Record) {
	lb := linePool.Get().(*lineBuf)
	if a.tmpl != nil {
		lb.b = appendTemplate(lb.b[:0], a.tmpl, rec)
	} else {
		fs := a.fields
		if rec.AI != nil && a.aiFields != nil {
			fs = a.aiFields
		}
		lb.b = appendRecord(lb.b[:0], fs, rec, a.json)
	}

	a.mu.Lock()
	if !a.closed {
		if len(a.buf)+len(lb.b) > cap(a.buf) {
			a.flushLocked()
		}
		if len(lb.b) > cap(a.buf) {
			a.writeLocked(lb.b)
		} else {
			a.buf = append(a.buf, lb.b...)
			if !a.armed {
				a.armed = true
				a.timer.Reset(accessLogFlushInterval)
			}
		}
	}
	a.mu.Unlock()

	if cap(lb.b) <= maxPooledLine {
		linePool.Put(lb)
	}
}

// flushTimer runs on the timer's goroutine 100 ms after a line was buffered.
func (a *AccessLog) flushTimer() {
	a.mu.Lock()
	a.armed = false
	a.flushLocked()
	a.mu.Unlock()
}

// Flush writes the pending lines now.
func (a *AccessLog) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flushLocked()
}

func (a *AccessLog) flushLocked() error {
	if len(a.buf) == 0 {
		return nil
	}
	err := a.writeLocked(a.buf)
	a.buf = a.buf[:0]
	return err
}

// writeLocked writes p to the output, reporting failures through the logger.
func (a *AccessLog) writeLocked(p []byte) error {
	_, err := a.out.Write(p)
	if err == nil {
		return nil
	}
	lines := uint64(0)
	for _, c := range p {
		if c == '\n' {
			lines++
		}
	}
	a.failed += lines
	if now := time.Now(); now.Sub(a.lastError) >= errorReportInterval {
		a.logger.Error("access log write failed", "lines_lost", a.failed, "err", err)
		a.failed, a.lastError = 0, now
	}
	return err
}

// Reopen writes the pending lines, then, when the output is a file, closes it and opens the
// path again: call it after the file was rotated (on SIGHUP). When the open fails the old
// file stays in use and the error is returned.
func (a *AccessLog) Reopen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ferr := a.flushLocked()
	if err := a.out.Reopen(); err != nil {
		return fmt.Errorf("access log: reopen: %w", err)
	}
	return ferr
}

// Close writes the pending lines and closes the output file (standard streams stay open).
// Later calls to Log do nothing. Close is idempotent.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.timer.Stop()
	a.armed = false
	return errors.Join(a.flushLocked(), a.out.Close())
}
