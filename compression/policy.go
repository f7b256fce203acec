package compression

import (
	"fmt"
	"strings"

	"github.com/verge-edge/verge/message"
)

// Defaults of a Policy's zero fields.
const (
	// DefaultLevel is the compression level when none is given: 5 of 1 (fastest) to 9
	// (smallest), a middle ground like Caddy's gzip default.
	DefaultLevel = 5
	// DefaultMinSize is the smallest Content-Length compressed, Caddy's 512 bytes: below it
	// the coding's framing and the CPU are not worth the bytes saved. (NGINX's
	// gzip_min_length defaults to 20.) A response of unknown length is compressed.
	DefaultMinSize = 512
)

// DefaultAlgorithms is the order of preference when a policy names none.
var DefaultAlgorithms = []Algorithm{Zstd, Brotli, Gzip}

// DefaultTypes are the media types compressed when a policy lists none: text, and the
// structured and font formats that are not compressed already. A trailing "*" matches any
// subtype ("text/*").
var DefaultTypes = []string{
	"text/*",
	"application/javascript",
	"application/x-javascript",
	"application/json",
	"application/*+json",
	"application/ld+json",
	"application/manifest+json",
	"application/xml",
	"application/*+xml",
	"application/xhtml+xml",
	"application/rss+xml",
	"application/atom+xml",
	"application/wasm",
	"application/graphql-response+json",
	"application/x-ndjson",
	"application/vnd.ms-fontobject",
	"application/x-font-ttf",
	"font/ttf",
	"font/otf",
	"font/eot",
	"image/svg+xml",
	"image/x-icon",
	"image/vnd.microsoft.icon",
	"image/bmp",
}

// Policy is what a route compresses, and how. Build one with NewPolicy; it is immutable and
// shared by the route's requests.
type Policy struct {
	// Algorithms are the codings offered, in the server's order of preference.
	Algorithms []Algorithm
	// Level is 1 (fastest) to 9 (smallest) for every coding: gzip's level, brotli's quality,
	// and zstd's speed (1-2 fastest, 3-5 default, 6-8 better, 9 best).
	Level int
	// MinSize is the smallest Content-Length compressed.
	MinSize int64

	exact    []string // media types matched whole
	prefixes []string // "type/" of "type/*" patterns
	suffixes []string // "type/" and "+suffix" of "type/*+suffix" patterns, in pairs
	pools    [numAlgorithms]*encoderPool
}

// NewPolicy builds a policy. Empty algorithms means DefaultAlgorithms, level 0 DefaultLevel,
// minSize 0 DefaultMinSize (negative means no minimum), empty types DefaultTypes.
func NewPolicy(algorithms []string, level int, minSize int64, types []string) (*Policy, error) {
	p := &Policy{Level: level, MinSize: minSize}
	if p.Level == 0 {
		p.Level = DefaultLevel
	}
	if p.Level < 1 || p.Level > 9 {
		return nil, fmt.Errorf("level %d out of range 1..9", level)
	}
	switch {
	case p.MinSize == 0:
		p.MinSize = DefaultMinSize
	case p.MinSize < 0:
		p.MinSize = 0
	}
	if len(algorithms) == 0 {
		p.Algorithms = DefaultAlgorithms
	}
	for _, s := range algorithms {
		a, ok := ParseAlgorithm(s)
		if !ok {
			return nil, fmt.Errorf("unknown algorithm %q (want zstd, br or gzip)", s)
		}
		for _, b := range p.Algorithms {
			if a == b {
				return nil, fmt.Errorf("algorithm %q listed twice", s)
			}
		}
		p.Algorithms = append(p.Algorithms, a)
	}
	if len(types) == 0 {
		types = DefaultTypes
	}
	for _, t := range types {
		if err := p.addType(t); err != nil {
			return nil, err
		}
	}
	for _, a := range p.Algorithms {
		p.pools[a] = poolFor(a, p.Level)
	}
	return p, nil
}

func (p *Policy) addType(t string) error {
	t = strings.ToLower(strings.TrimSpace(t))
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ == "" || sub == "" || strings.ContainsAny(t, " ;,") || typ == "*" {
		return fmt.Errorf("invalid media type %q (want type/subtype, type/* or type/*+suffix)", t)
	}
	switch {
	case sub == "*":
		p.prefixes = append(p.prefixes, typ+"/")
	case strings.HasPrefix(sub, "*+"):
		p.suffixes = append(p.suffixes, typ+"/", sub[1:])
	case strings.Contains(sub, "*"):
		return fmt.Errorf("invalid media type %q (a wildcard is the whole subtype or *+suffix)", t)
	default:
		p.exact = append(p.exact, t)
	}
	return nil
}

// Compressible reports whether a Content-Type value names one of the policy's media types
// (parameters ignored, case-insensitive).
func (p *Policy) Compressible(contentType string) bool {
	if i := strings.IndexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	ct := strings.TrimSpace(contentType)
	if ct == "" {
		return false
	}
	for _, e := range p.exact {
		if strings.EqualFold(ct, e) {
			return true
		}
	}
	for _, pre := range p.prefixes {
		if len(ct) > len(pre) && strings.EqualFold(ct[:len(pre)], pre) {
			return true
		}
	}
	for i := 0; i+1 < len(p.suffixes); i += 2 {
		pre, suf := p.suffixes[i], p.suffixes[i+1]
		if len(ct) > len(pre)+len(suf) && strings.EqualFold(ct[:len(pre)], pre) &&
			strings.EqualFold(ct[len(ct)-len(suf):], suf) {
			return true
		}
	}
	return false
}

// Decide says how resp, the answer to req, is sent: the coding to encode it with (None for
// identity), and whether the representation depends on Accept-Encoding at all (then the
// response must carry Vary: Accept-Encoding, whichever coding this client gets). A HEAD is
// decided as its GET (Start then changes the head without encoding anything). Not
// compressed: 1xx, 204, 206 and 304 responses, responses with a
// Content-Encoding or a Content-Range already, with Cache-Control: no-transform (RFC 9110
// section 7.7), of another media type, or with a Content-Length below MinSize.
func (p *Policy) Decide(req *message.Request, resp *message.Response) (alg Algorithm, vary bool) {
	if resp.Status < 200 || resp.Status == 204 || resp.Status == 206 {
		return None, false
	}
	if ce, ok := resp.Header.Lookup("Content-Encoding"); ok && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		return None, false
	}
	if resp.Header.Has("Content-Range") || resp.Header.HasToken("Cache-Control", "no-transform") {
		return None, false
	}
	ct, hasCT := resp.Header.Lookup("Content-Type")
	if resp.Status == 304 {
		// The 304 stands for the 200 the client holds, which was compressed when its type
		// qualifies (a 304 usually has no Content-Type: assume it did).
		return None, !hasCT || p.Compressible(ct)
	}
	if !p.Compressible(ct) || resp.ContentLength >= 0 && resp.ContentLength < p.MinSize {
		return None, false
	}
	return Negotiate(AcceptEncoding(&req.Header), p.Algorithms), true
}

// Validators gives resp, the head of a 200 answering req, the Vary and ETag that Start would
// give it, and changes nothing else. A handler answering a conditional request with a 304
// calls it on the 200's head (its Content-Type, Content-Encoding and Content-Length) before
// turning it into the 304, and sends that 304 without Start: the 304 then carries the very
// validator the 200 carried. When the request's If-None-Match holds the strong ETag and not
// its weak form, the client holds the identity representation (compression was refused,
// say, by SetMaxActive's cap) and the ETag stays strong.
func (p *Policy) Validators(req *message.Request, resp *message.Response) {
	alg, vary := p.Decide(req, resp)
	if vary {
		AddVary(&resp.Header)
	}
	if alg != None && heldCoding(req, &resp.Header) != heldIdentity {
		WeakenETag(&resp.Header)
	}
}

// notModified gives a 304 from elsewhere (an upstream's) the Vary and ETag of the 200 it
// stands for. A 304 rarely says what that 200 was, so: a 304 with a Content-Encoding stands
// for a 200 that had one (left alone); with a Content-Type, for a 200 of that type; without
// one, for a 200 of a compressible type. The ETag is made weak when the client holds the
// compressed representation: its If-None-Match names the weak form of the ETag (the one the
// compressed 200 carried) and not the strong one; when it names only the strong one, the
// client holds the identity representation and the ETag stays strong; otherwise it is made
// weak when the client accepts one of the policy's codings.
//
// The Vary is guessed too: a client that accepts one of the policy's codings yet holds the
// identity representation got a 200 the policy did not apply to (type, size; or the
// SetMaxActive cap, rarely), which had no Vary from it; otherwise the 304 gets Vary like a
// 200 of its type. A 304 without a Content-Type for a 200 the policy left alone may thus get
// a Vary: Accept-Encoding its 200 lacked, which only makes caches keep more variants.
func (p *Policy) notModified(req *message.Request, resp *message.Response) {
	_, vary := p.Decide(req, resp)
	if !vary {
		return
	}
	accepts := Negotiate(AcceptEncoding(&req.Header), p.Algorithms) != None
	held := heldCoding(req, &resp.Header)
	if held == heldIdentity && accepts {
		return
	}
	AddVary(&resp.Header)
	if held == heldEncoded || held == heldUnknown && accepts {
		WeakenETag(&resp.Header)
	}
}

const (
	heldUnknown = iota
	heldIdentity
	heldEncoded
)

// heldCoding tells from the request's If-None-Match which representation the client holds,
// given the strong ETag h carries: heldIdentity when the list names the tag itself and not
// its weak form, heldEncoded for the converse, heldUnknown otherwise (no If-None-Match, "*",
// both forms, neither, or a weak ETag).
func heldCoding(req *message.Request, h *message.Header) int {
	et, ok := h.Lookup("ETag")
	if !ok || strings.HasPrefix(et, "W/") {
		return heldUnknown
	}
	inm, ok := req.Header.Lookup("If-None-Match")
	if !ok {
		return heldUnknown
	}
	strong, weak := false, false
	for inm != "" {
		var t string
		t, inm, _ = strings.Cut(inm, ",")
		t = strings.TrimSpace(t)
		if t == et {
			strong = true
		} else if len(t) == len(et)+2 && t[:2] == "W/" && t[2:] == et {
			weak = true
		}
	}
	switch {
	case strong && !weak:
		return heldIdentity
	case weak && !strong:
		return heldEncoded
	}
	return heldUnknown
}

// AcceptEncoding returns the request's Accept-Encoding, its fields joined when it has several.
func AcceptEncoding(h *message.Header) string {
	ae, _ := h.Lookup("Accept-Encoding")
	if h.Count("Accept-Encoding") > 1 {
		var all []string
		h.Values("Accept-Encoding", func(v string) bool { all = append(all, v); return true })
		ae = strings.Join(all, ",")
	}
	return ae
}

// AddVary adds Accept-Encoding to h's Vary unless it is there already (or Vary is "*").
func AddVary(h *message.Header) {
	if h.HasToken("Vary", "Accept-Encoding") || h.HasToken("Vary", "*") {
		return
	}
	h.Add("Vary", "Accept-Encoding")
}

// WeakenETag makes a strong ETag weak: the encoded bytes differ from the identity ones, so
// the validator may no longer claim byte equality (RFC 9110 section 8.8.1).
func WeakenETag(h *message.Header) {
	if et, ok := h.Lookup("ETag"); ok && !strings.HasPrefix(et, "W/") {
		h.Set("ETag", "W/"+et)
	}
}
