package http1

// Default limits, applied by Limits.withDefaults.
const (
	// DefaultMaxRequestLine bounds the request line (method, target and version).
	DefaultMaxRequestLine = 8 << 10
	// DefaultMaxHeaderBytes bounds a whole request head: request line, fields and the empty
	// line. The same bound applies to a trailer section.
	DefaultMaxHeaderBytes = 32 << 10
	// DefaultMaxHeaders bounds the number of header (or trailer) fields.
	DefaultMaxHeaders = 100
	// DefaultMaxChunkExtension bounds the chunk extensions of one chunk-size line. Chunk
	// extensions carry nothing Verge uses; the bound stops a client from making the server
	// parse unbounded junk between chunks.
	DefaultMaxChunkExtension = 1 << 10
	// maxChunkExtTotalFactor times MaxChunkExtension bounds the chunk extensions of a whole body.
	maxChunkExtTotalFactor = 16
)

// Limits bound what a peer may send. The zero value of each field selects its default; the
// defaults are applied in one place (withDefaults). When a limit is exceeded the server answers
// with the status named on the field and closes the connection.
type Limits struct {
	// MaxRequestLine is the longest request line accepted, in bytes without CRLF. Longer
	// request lines get 414 URI Too Long. Zero means DefaultMaxRequestLine (8 KiB).
	MaxRequestLine int
	// MaxHeaderBytes is the largest request head (request line, fields, CRLFs) and the largest
	// trailer section. Larger heads get 431 Request Header Fields Too Large. Zero means
	// DefaultMaxHeaderBytes (32 KiB).
	MaxHeaderBytes int
	// MaxHeaders is the largest number of header fields (and, separately, trailer fields).
	// More get 431. Zero means DefaultMaxHeaders (100).
	MaxHeaders int
	// MaxChunkExtension is the longest chunk extension of one chunk-size line, in bytes; a
	// whole body may carry at most 16 times as much. More fails the body read with 400 Bad
	// Request. Zero means DefaultMaxChunkExtension (1 KiB).
	MaxChunkExtension int
	// MaxBodySize is the largest request body in bytes. A larger Content-Length gets 413
	// Content Too Large before the handler runs; a chunked body that grows past it fails the
	// body read with a RequestTooLarge fault. Zero or negative means no limit.
	MaxBodySize int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxRequestLine <= 0 {
		l.MaxRequestLine = DefaultMaxRequestLine
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxRequestLine > l.MaxHeaderBytes {
		l.MaxRequestLine = l.MaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	if l.MaxChunkExtension <= 0 {
		l.MaxChunkExtension = DefaultMaxChunkExtension
	}
	if l.MaxBodySize < 0 {
		l.MaxBodySize = 0
	}
	return l
}
