package router

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// A cached worker route runs its worker as the route's origin: the Request phase lets the
// request go on to the cache lookup, UpstreamPeer answers with the route's worker peer, and
// workerTransport runs the worker for that peer, its response streaming back through a pipe
// as an origin response would. The cache then stores, revalidates, collapses and purges the
// worker's responses exactly as an upstream's.

// workerTransport sends requests for worker peers to their worker and the rest to next.
type workerTransport struct {
	next  proxy.RoundTripper
	peers map[*upstream.Peer]*worker.Worker // read-only once serving
}

// RoundTrip implements proxy.RoundTripper.
func (t *workerTransport) RoundTrip(ctx context.Context, peer *upstream.Peer, req *message.Request) (*message.Response, error) {
	w := t.peers[peer]
	if w == nil {
		return t.next.RoundTrip(ctx, peer, req)
	}
	return serveWorkerOrigin(ctx, w, req)
}

// serveWorkerOrigin runs w for req on its own goroutine and returns the response once its
// head is written; the body streams from the worker's writes.
func serveWorkerOrigin(ctx context.Context, w *worker.Worker, req *message.Request) (*message.Response, error) {
	// The engine built req for an origin: the client's scheme and address are in the
	// forwarding fields it added.
	if p := req.Header.Get("X-Forwarded-Proto"); p != "" {
		req.Scheme = p
	}
	wr := &worker.Request{Message: req, TLS: req.Scheme == "https", RemoteAddr: req.Header.Get("X-Real-IP")}
	if wr.RemoteAddr == "" {
		if xff := req.Header.Get("X-Forwarded-For"); xff != "" {
			wr.RemoteAddr = strings.TrimSpace(xff[strings.LastIndexByte(xff, ',')+1:])
		}
	}
	pr, pw := io.Pipe()
	o := &originWriter{head: make(chan *message.Response, 1), pw: pw, done: make(chan struct{})}
	o.body = &originBody{pr: pr, o: o}
	go runWorkerOrigin(ctx, w, wr, o)
	select {
	case resp := <-o.head:
		return resp, nil
	case <-o.done:
		select {
		case resp := <-o.head:
			return resp, nil
		default:
		}
		return nil, o.failure(w)
	}
}

// runWorkerOrigin is the goroutine of one worker invocation serving as an origin; it ends
// when the invocation does (bounded by the worker's wall time limit).
func runWorkerOrigin(ctx context.Context, w *worker.Worker, req *worker.Request, o *originWriter) {
	defer close(o.done)
	_, err := w.Serve(ctx, o, req)
	o.err = err
	if err != nil {
		o.pw.CloseWithError(err)
		return
	}
	o.pw.Close()
}

// originWriter is the worker's ResponseWriter: the head goes to the waiting RoundTrip, the
// body through a pipe to whoever reads the response.
type originWriter struct {
	head chan *message.Response
	pw   *io.PipeWriter
	body *originBody
	done chan struct{}
	err  error // the invocation's, set before done is closed
	sent bool
	tr   message.Header
}

func (o *originWriter) WriteHeader(resp *message.Response) error {
	if o.sent {
		return errors.New("router: response head written twice")
	}
	o.sent = true
	r := &message.Response{
		Status:        resp.Status,
		Proto:         message.HTTP11,
		Header:        resp.Header.Clone(),
		ContentLength: resp.ContentLength,
		Body:          o.body,
	}
	o.head <- r
	return nil
}

func (o *originWriter) Write(p []byte) (int, error) { return o.pw.Write(p) }

// Flush is a no-op: the pipe hands every write to the reader before returning.
func (o *originWriter) Flush() error { return nil }

func (o *originWriter) Finish(trailer *message.Header) error {
	return nil // the pipe is closed when Serve returns
}

// failure turns a worker that ended without a response head into the engine's error.
func (o *originWriter) failure(w *worker.Worker) *fault.Error {
	var we *worker.Error
	if !errors.As(o.err, &we) {
		we = &worker.Error{Kind: worker.NoResponse, Worker: w.Name(), Cause: o.err}
	}
	return &fault.Error{Source: fault.Upstream, Kind: fault.Unknown, Status: we.StatusCode(), Cause: we}
}

// originBody is the response body read from the worker's pipe. Close stops the worker's
// writes and waits for its invocation to end.
type originBody struct {
	pr   *io.PipeReader
	o    *originWriter
	once sync.Once
}

func (b *originBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

func (b *originBody) Close() error {
	b.once.Do(func() {
		b.pr.CloseWithError(errBodyClosed)
		<-b.o.done
	})
	return nil
}

var errBodyClosed = errors.New("router: response body closed by the proxy")

// isUpgrade reports whether req asks to switch protocols (a WebSocket): a cached worker
// route serves those directly.
func isUpgrade(req *message.Request) bool {
	return req.Header.Has("Upgrade") && req.Header.HasToken("Connection", "upgrade")
}
