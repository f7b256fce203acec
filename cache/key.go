package cache

import (
	"github.com/cespare/xxhash/v2"
	"github.com/verge-edge/verge/message"
)

// appendKey appends the default cache key of req under p: the method (HEAD shares GET's
// entries), scheme, host (lowercased, without a default port) and path, and the query after
// the policy's parameter rules, then the values of p.KeyHeaders. Parts are separated by NUL
// bytes, which cannot occur in any of them.
func appendKey(dst []byte, req *message.Request, p *Policy) []byte {
	dst = append(dst, keyMethod(req.Method)...)
	dst = append(dst, 0)
	scheme := req.Scheme
	if scheme == "" {
		scheme = "http"
	}
	dst = append(dst, scheme...)
	dst = append(dst, 0)
	dst = appendLower(dst, hostForKey(req.Authority, scheme))
	dst = append(dst, 0)
	dst = append(dst, req.Path()...)
	if !p.IgnoreQuery {
		dst = appendQuery(dst, req.RawQuery(), p)
	}
	for _, h := range p.KeyHeaders {
		dst = append(dst, 0)
		dst = append(dst, h...)
		dst = append(dst, ':')
		req.Header.Values(h, func(v string) bool {
			dst = append(dst, v...)
			dst = append(dst, ',')
			return true
		})
	}
	return dst
}

func keyMethod(m string) string {
	if m == "HEAD" {
		return "GET"
	}
	return m
}

// hostForKey drops the scheme's default port so that "a.test" and "a.test:80" share entries.
func hostForKey(authority, scheme string) string {
	n := len(authority)
	switch {
	case scheme == "http" && n > 3 && authority[n-3:] == ":80":
		return authority[:n-3]
	case scheme == "https" && n > 4 && authority[n-4:] == ":443":
		return authority[:n-4]
	}
	return authority
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendQuery appends "?query" keeping the parameters p allows, in their original order.
func appendQuery(dst []byte, q string, p *Policy) []byte {
	if q == "" {
		return dst
	}
	if len(p.IncludeQuery) == 0 && len(p.ExcludeQuery) == 0 {
		dst = append(dst, '?')
		return append(dst, q...)
	}
	first := true
	for q != "" {
		var pair string
		pair, q = cutByte(q, '&')
		if pair == "" {
			continue
		}
		name, _ := cutByte(pair, '=')
		if !queryKept(name, p) {
			continue
		}
		if first {
			dst = append(dst, '?')
			first = false
		} else {
			dst = append(dst, '&')
		}
		dst = append(dst, pair...)
	}
	return dst
}

func queryKept(name string, p *Policy) bool {
	if len(p.IncludeQuery) > 0 {
		for _, n := range p.IncludeQuery {
			if n == name {
				return true
			}
		}
		return false
	}
	for _, n := range p.ExcludeQuery {
		if n == name {
			return false
		}
	}
	return true
}

// hashKey hashes a primary key.
func hashKey(key []byte) uint64 { return xxhash.Sum64(key) }

// appendVary appends the normalized values of the request fields named by a response's Vary
// (RFC 9111 section 4.1): every field is read as a comma-separated list whose members are
// trimmed of whitespace, and the members of all the fields are joined with single commas, so
// "en, de", " en ,   de" and two fields "en" and "de" select the same response.
func appendVary(dst []byte, req *message.Request, names []string) []byte {
	for _, n := range names {
		dst = append(dst, n...)
		dst = append(dst, 0)
		first := true
		req.Header.Values(n, func(v string) bool {
			for {
				member, rest, more := cutComma(v)
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = append(dst, message.TrimOWS(member)...)
				if !more {
					return true
				}
				v = rest
			}
		})
		dst = append(dst, 0)
	}
	return dst
}

// cutComma cuts s at its first comma.
func cutComma(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// variantHash combines a primary key hash with the request's Vary values.
func variantHash(primary uint64, varyVals []byte) uint64 {
	if len(varyVals) == 0 {
		return primary
	}
	var d xxhash.Digest
	d.Reset()
	var b [8]byte
	for i := range b {
		b[i] = byte(primary >> (8 * i))
	}
	d.Write(b[:])
	d.Write(varyVals)
	return d.Sum64()
}
