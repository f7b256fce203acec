package h3

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// qlogTracer returns a quic.Config Tracer that writes one qlog file per connection into dir,
// named <original destination connection id>_<server|client>.sqlog. Files that cannot be
// created are logged and skipped; the connection goes on without a trace.
func qlogTracer(dir string, logger *slog.Logger) func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	return func(_ context.Context, isClient bool, id quic.ConnectionID) qlogwriter.Trace {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			logger.Warn("h3: qlog directory", "dir", dir, "err", err)
			return nil
		}
		role := "server"
		if isClient {
			role = "client"
		}
		path := filepath.Join(dir, id.String()+"_"+role+".sqlog")
		f, err := os.Create(path)
		if err != nil {
			logger.Warn("h3: qlog file", "path", path, "err", err)
			return nil
		}
		seq := qlogwriter.NewConnectionFileSeq(&bufferedFile{w: bufio.NewWriterSize(f, 32<<10), f: f}, isClient, id)
		go seq.Run()
		return seq
	}
}

// bufferedFile buffers writes to a qlog file and flushes on Close.
type bufferedFile struct {
	w *bufio.Writer
	f *os.File
}

func (b *bufferedFile) Write(p []byte) (int, error) { return b.w.Write(p) }

func (b *bufferedFile) Close() error {
	err := b.w.Flush()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return err
}
