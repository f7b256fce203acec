package observe

import (
	"fmt"
	"log/slog"
	"strings"
)

// ErrorLogConfig configures the error log, Verge's operational log (start-up, reloads,
// upstream failures, health changes). The zero value logs at level info, as text, to
// standard error.
type ErrorLogConfig struct {
	// Level is the lowest level logged: "debug", "info", "warn" or "error" (case-insensitive).
	// Empty means "info".
	Level string
	// Format is "text" (log/slog's key=value lines) or "json". Empty means "text".
	Format string
	// Output is "stderr", "stdout" or a file path opened for appending and reopened by
	// ErrorLog.Reopen. Empty means "stderr".
	Output string
}

// ErrorLog is the error log: a *slog.Logger and the output behind it.
type ErrorLog struct {
	// Logger writes to the configured output; hand it to every component.
	Logger *slog.Logger
	level  *slog.LevelVar
	out    *output
}

// ParseLevel returns the slog level named s ("debug", "info", "warn", "error"; empty means
// info).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("error log: unknown level %q (want debug, info, warn or error)", s)
}

// NewErrorLog validates cfg, opens its output and builds the logger.
func NewErrorLog(cfg ErrorLogConfig) (*ErrorLog, error) {
	lvl, err := ParseLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	json := false
	switch strings.ToLower(cfg.Format) {
	case "", "text":
	case "json":
		json = true
	default:
		return nil, fmt.Errorf(`error log: format must be "text" or "json", got %q`, cfg.Format)
	}
	out, err := openOutput(cfg.Output, "stderr")
	if err != nil {
		return nil, fmt.Errorf("error log: %w", err)
	}
	e := &ErrorLog{level: new(slog.LevelVar), out: out}
	e.level.Set(lvl)
	opts := &slog.HandlerOptions{Level: e.level}
	var h slog.Handler
	if json {
		h = slog.NewJSONHandler(out, opts)
	} else {
		h = slog.NewTextHandler(out, opts)
	}
	e.Logger = slog.New(h)
	return e, nil
}

// SetLevel changes the lowest level logged, for a reload that changed it.
func (e *ErrorLog) SetLevel(l slog.Level) { e.level.Set(l) }

// Reopen closes and reopens a file output (after rotation); it does nothing for standard
// streams.
func (e *ErrorLog) Reopen() error {
	if err := e.out.Reopen(); err != nil {
		return fmt.Errorf("error log: reopen: %w", err)
	}
	return nil
}

// Close closes a file output; standard streams stay open. Records logged afterwards are lost.
func (e *ErrorLog) Close() error { return e.out.Close() }
