package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/h3"
)

// h3Codec adapts *h3.ClientConn to muxCodec.
type h3Codec struct {
	*h3.ClientConn
}

var _ muxCodec = h3Codec{}

// newH3Codec dials QUIC to addr and starts HTTP/3 with the bucket's settings.
func newH3Codec(ctx context.Context, addr string, tc *tls.Config, o *codecOptions) (muxCodec, error) {
	cc, err := h3.Dial(ctx, addr, tc, h3.ClientOptions{
		MaxResponseHeaderBytes: o.MaxResponseHeaderBytes,
		ResponseHeaderTimeout:  noLimitNegative(o.ReadTimeout),
		IdleTimeout:            o.IdleTimeout,
	})
	if err != nil {
		return nil, err
	}
	return h3Codec{cc}, nil
}

// dialQUIC opens an HTTP/3 connection to b's peer within the connect timeout. Errors are
// *fault.Error; they are retryable unless ctx ended (nothing was sent).
func (p *Pool) dialQUIC(ctx context.Context, b *bucket, connectTimeout time.Duration) (*pconn, error) {
	dctx := ctx
	if connectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	mc, err := p.t.cfg.codecs.http3(dctx, b.key.Address, b.tlsConfig, &b.opts)
	if err != nil {
		var fe *fault.Error
		if !errors.As(err, &fe) {
			return nil, classifyDial(ctx, fault.ConnectRefused, err)
		}
		if ctx.Err() != nil {
			return nil, classifyDial(ctx, fe.Kind, err)
		}
		return nil, fe
	}
	pc := newPconn(p, b, dialed{})
	pc.h2 = mc
	return pc, nil
}
