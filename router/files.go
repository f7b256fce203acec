package router

import (
	"fmt"

	"github.com/verge-edge/verge/compression"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/files"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// compressFlushBelow is the chunk size under which the compressor is flushed: the engine
// reads the origin's body into 32 KiB buffers, and a shorter read means the origin paused,
// so what was compressed so far goes to the client instead of waiting in the encoder.
const compressFlushBelow = 32 << 10

// compileFiles opens the route's static file root and builds its compression policy. The
// handlers are closed with the instance.
func (in *Instance) compileFiles(r *route, c *config.Route) error {
	if c.Compress != nil {
		p, err := c.Compress.Policy()
		if err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		r.compress = p
	}
	f := c.Files
	if f == nil {
		return nil
	}
	cfg := files.Config{
		Root:          f.Root,
		Browse:        f.Browse,
		SPAFallback:   f.SPAFallback,
		Precompressed: f.PrecompressedAlgorithms(),
		Hidden:        f.Hidden,
		Compress:      r.compress,
	}
	if f.Index != nil {
		cfg.Index = append([]string{}, (*f.Index)...)
	}
	h, err := files.New(cfg)
	if err != nil {
		return err
	}
	r.files = h
	in.fileHandlers = append(in.fileHandlers, h)
	return nil
}

func (in *Instance) closeFiles() {
	for _, h := range in.fileHandlers {
		h.Close()
	}
}

// serveFiles answers the request from the route's directory. Every head, errors included,
// gets what Response gives an upstream's: the response header operations, the conditional
// header rules and the request ID.
func (p *phases) serveFiles(s *proxy.Session, c *reqCtx, r *route) (bool, error) {
	var head files.Head
	if !r.respOps.empty() || r.ext != nil || c.reqIDField != "" {
		head = func(resp *message.Response) {
			r.respOps.apply(&resp.Header)
			if r.ext != nil {
				r.ext.response(s, c, resp.Status, &resp.Header)
			}
			p.addRequestID(c, &resp.Header)
		}
	}
	res, err := r.files.Serve(s.Exchange(), s.Req, head)
	s.Status = res.Status
	s.BytesSent += res.BytesSent
	return true, err
}

// compressedExchange returns the exchange a worker writes its response to: the session's,
// wrapped in a compressor when the route compresses (and the request does not switch
// protocols). cx, when not nil, must be released after the worker returned.
func compressedExchange(s *proxy.Session, r *route) (ex message.ServerExchange, cx *compression.Exchange) {
	if r.compress == nil || isUpgrade(s.Req) {
		return s.Exchange(), nil
	}
	cx = &compression.Exchange{ServerExchange: s.Exchange(), Policy: r.compress}
	return cx, cx
}
