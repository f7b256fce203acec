// Package compression encodes HTTP response bodies with zstd, brotli or gzip as they stream,
// after negotiating the coding with the client's Accept-Encoding (RFC 9110 section 12.5.3).
// A Policy says which codings a route offers, at which level, for which content types and
// from which size; an Encoder applies it to one response: Start rewrites the head
// (Content-Encoding, Vary, ETag, Content-Length) and Body compresses the chunks.
//
// The codecs are github.com/klauspost/compress (gzip and zstd) and
// github.com/andybalholm/brotli (pure Go); encoders are pooled per coding and level, since
// creating one costs far more than compressing a small response.
package compression

import "strings"

// Algorithm is a content coding. The zero value, None, is identity.
type Algorithm uint8

// The codings Verge encodes.
const (
	None Algorithm = iota
	Zstd
	Brotli
	Gzip
	numAlgorithms
)

// Token is the coding's name in Accept-Encoding and Content-Encoding.
func (a Algorithm) Token() string {
	switch a {
	case Zstd:
		return "zstd"
	case Brotli:
		return "br"
	case Gzip:
		return "gzip"
	}
	return "identity"
}

// Ext is the file name suffix of a file precompressed with the coding (".zst", ".br", ".gz").
func (a Algorithm) Ext() string {
	switch a {
	case Zstd:
		return ".zst"
	case Brotli:
		return ".br"
	case Gzip:
		return ".gz"
	}
	return ""
}

func (a Algorithm) String() string { return a.Token() }

// ParseAlgorithm returns the coding named by a config or header token: zstd, br or gzip
// (case-insensitive).
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch {
	case strings.EqualFold(s, "zstd"):
		return Zstd, true
	case strings.EqualFold(s, "br"):
		return Brotli, true
	case strings.EqualFold(s, "gzip"):
		return Gzip, true
	}
	return None, false
}

// Negotiate picks the coding of offered (in the server's order of preference) that
// acceptEncoding ranks highest, or None. A coding is acceptable when the field names it, or
// "*", with a q-value above zero ("gzip;q=0" refuses gzip even when "*" is accepted); among
// equal q-values the server's order decides. "x-gzip" counts as gzip (RFC 9110 section
// 8.4.1.3). An absent or empty field accepts none. It does not allocate.
func Negotiate(acceptEncoding string, offered []Algorithm) Algorithm {
	if acceptEncoding == "" || len(offered) == 0 {
		return None
	}
	q := weights(acceptEncoding)
	best, bestQ := None, 0
	for _, a := range offered {
		if q[a] > bestQ {
			best, bestQ = a, q[a]
		}
	}
	return best
}

// Quality returns the weight, 0 to 1000, acceptEncoding gives a (0: refused or not named).
func Quality(acceptEncoding string, a Algorithm) int {
	if acceptEncoding == "" || a == None || a >= numAlgorithms {
		return 0
	}
	return weights(acceptEncoding)[a]
}

// weights parses acceptEncoding into each coding's weight in thousandths.
func weights(acceptEncoding string) [numAlgorithms]int {
	// q-values in thousandths, -1 when the field does not name the coding.
	var q [numAlgorithms]int
	for i := range q {
		q[i] = -1
	}
	star := -1
	s := acceptEncoding
	for s != "" {
		var item string
		if i := strings.IndexByte(s, ','); i >= 0 {
			item, s = s[:i], s[i+1:]
		} else {
			item, s = s, ""
		}
		name, params, _ := strings.Cut(item, ";")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		qv := parseQ(params)
		if name == "*" {
			star = qv
			continue
		}
		a, ok := ParseAlgorithm(name)
		if !ok && strings.EqualFold(name, "x-gzip") {
			a, ok = Gzip, true
		}
		if ok && qv > q[a] {
			q[a] = qv
		}
	}
	for i := range q {
		if q[i] < 0 {
			q[i] = max(star, 0)
		}
	}
	return q
}

// parseQ reads the q parameter of an Accept-Encoding item in thousandths: 1000 when absent,
// 0 when malformed (a malformed weight is not a reason to send a coding the client may not
// read).
func parseQ(params string) int {
	for params != "" {
		var p string
		if i := strings.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, ""
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		return qvalue(strings.TrimSpace(v))
	}
	return 1000
}

// qvalue parses a weight (RFC 9110 section 12.4.2: "0", "1", "0.xxx", "1.000").
func qvalue(v string) int {
	if v == "" || (v[0] != '0' && v[0] != '1') {
		return 0
	}
	n := int(v[0]-'0') * 1000
	if len(v) == 1 {
		return n
	}
	if v[1] != '.' || len(v) > 5 {
		return 0
	}
	scale := 100
	for i := 2; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0
		}
		n += int(c-'0') * scale
		scale /= 10
	}
	if n > 1000 {
		return 0
	}
	return n
}
