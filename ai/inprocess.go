package ai

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// handlerTransport is an http.RoundTripper that serves requests with an http.Handler in
// process: no socket, no serialisation of the head. The body streams through a pipe, so a
// handler that flushes each event is read event by event.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, head: make(chan struct{})}
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	go serveInProcess(t.h, w, req)
	select {
	case <-w.head:
	case <-req.Context().Done():
		return nil, ctx.Err()
	}
	res := &http.Response{
		Status: strconv.Itoa(w.status) + " " + http.StatusText(w.status), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.sent, Body: &pipeBody{pr: pr, stop: stop}, ContentLength: -1, Request: req,
	}
	return res, nil
}

// serveInProcess runs the handler and ends the pipe when it returns (or panics).
func serveInProcess(h http.Handler, w *pipeWriter, req *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			w.pw.CloseWithError(fmt.Errorf("ai: in-process provider panicked: %v", v))
			w.writeHead(http.StatusInternalServerError)
			return
		}
		w.writeHead(http.StatusOK)
		w.pw.Close()
	}()
	h.ServeHTTP(w, req)
}

// pipeWriter is the handler's http.ResponseWriter.
type pipeWriter struct {
	header http.Header
	sent   http.Header
	status int
	pw     *io.PipeWriter
	once   sync.Once
	head   chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	if status >= 100 && status < 200 {
		return
	}
	w.writeHead(status)
}

func (w *pipeWriter) writeHead(status int) {
	w.once.Do(func() {
		w.status = status
		w.sent = w.header.Clone()
		close(w.head)
	})
}

// Write blocks until the reader takes the bytes: the body streams at the reader's pace.
func (w *pipeWriter) Write(p []byte) (int, error) {
	w.writeHead(http.StatusOK)
	return w.pw.Write(p)
}

// Flush does nothing: every Write is already handed to the reader.
func (w *pipeWriter) Flush() {}

// pipeBody is the response body; closing it makes the handler's writes fail.
type pipeBody struct {
	pr   *io.PipeReader
	stop func() bool
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

func (b *pipeBody) Close() error {
	b.stop()
	return b.pr.CloseWithError(io.ErrClosedPipe)
}
