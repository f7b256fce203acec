package observe

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// logFileMode is the permission of a log file Verge creates (as NGINX creates its logs).
const logFileMode = 0o644

// output is a log destination: standard output, standard error, a caller's writer, or a file
// opened for appending that Reopen closes and opens again (after logrotate moved it away).
type output struct {
	mu   sync.Mutex
	path string    // file path, "" for stdout, stderr or a caller's writer
	w    io.Writer // where bytes go
	f    *os.File  // the open file when path is set
}

// openOutput returns the output for spec: "stdout", "stderr", or a file path. An empty spec
// means def.
func openOutput(spec, def string) (*output, error) {
	if spec == "" {
		spec = def
	}
	switch spec {
	case "stdout":
		return &output{w: os.Stdout}, nil
	case "stderr":
		return &output{w: os.Stderr}, nil
	}
	f, err := openLogFile(spec)
	if err != nil {
		return nil, err
	}
	return &output{path: spec, w: f, f: f}, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logFileMode)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Write writes p to the current destination.
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w == nil {
		return 0, os.ErrClosed
	}
	return o.w.Write(p)
}

// Reopen opens the file path again and switches to it, closing the old file; it does nothing
// for standard streams and writers. When the open fails the old file stays in use.
func (o *output) Reopen() error {
	if o.path == "" {
		return nil
	}
	f, err := openLogFile(o.path)
	if err != nil {
		return err
	}
	o.mu.Lock()
	old := o.f
	o.f, o.w = f, f
	o.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			return fmt.Errorf("close rotated log file: %w", err)
		}
	}
	return nil
}

// Close closes an owned file; later writes fail with os.ErrClosed. Standard streams and
// caller writers are left open.
func (o *output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w = nil
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	if err != nil {
		return fmt.Errorf("close log file: %w", err)
	}
	return nil
}
