package router

import "unsafe"

// Route matching sees a request path the way origins read it. An origin decodes
// percent-encoded characters, resolves "." and ".." segments and (most servers, NGINX's
// merge_slashes) merges repeated slashes, so matching the raw path would let a client reach
// a path a route refuses by spelling it differently: /%69nternal, /x/../internal,
// //internal. Matching uses the normalized path; the request goes upstream unchanged, as
// NGINX's proxy_pass without a URI does.

// maxStackPath is the longest path normalized without allocating.
const maxStackPath = 512

// needsNormalizing reports whether path has a percent-encoding, a "." or ".." segment or
// repeated slashes. It is the only cost on the hot path.
func needsNormalizing(path string) bool {
	if len(path) == 0 || path[0] != '/' {
		return false // "*" and other non-origin forms are matched as they are
	}
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '%':
			return true
		case '/':
			if i+1 < len(path) && (path[i+1] == '/' || path[i+1] == '.') {
				return true
			}
		}
	}
	return false
}

// normalizePath returns path with percent-encoded unreserved characters decoded (RFC 3986
// section 6.2.2.2; other escapes keep their meaning and are only upper-cased, so %2F stays
// an encoded slash), dot segments removed (section 5.2.4) and repeated slashes merged.
// scratch holds the result when it fits; path must start with '/'.
func normalizePath(path string, scratch []byte) string {
	n, _ := normalizePathSlash(path, scratch)
	return n
}

// normalizePathSlash is normalizePath that also reports whether an encoded slash (%2F) was
// kept.
func normalizePathSlash(path string, scratch []byte) (string, bool) {
	slash := false
	dec := scratch[:0]
	if len(path) > cap(scratch)/2 {
		dec = make([]byte, 0, len(path))
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]) {
			v := unhex(path[i+1])<<4 | unhex(path[i+2])
			if unreserved(v) {
				dec = append(dec, v)
			} else {
				slash = slash || v == '/' || v == '\\'
				dec = append(dec, '%', upperHex(path[i+1]), upperHex(path[i+2]))
			}
			i += 2
			continue
		}
		dec = append(dec, c)
	}
	// Remove dot segments and empty ones, writing behind the reading position.
	out := scratch[cap(scratch)/2 : cap(scratch)/2]
	if len(path) > cap(scratch)/2 {
		out = make([]byte, 0, len(dec)+1)
	}
	trailing := false
	for i := 0; i < len(dec); {
		// dec[i] is '/': the segment is dec[i+1:j].
		j := i + 1
		for j < len(dec) && dec[j] != '/' {
			j++
		}
		seg := dec[i+1 : j]
		last := j == len(dec)
		switch string(seg) {
		case "", ".":
			trailing = last
		case "..":
			for len(out) > 0 && out[len(out)-1] != '/' {
				out = out[:len(out)-1]
			}
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, '/')
			out = append(out, seg...)
			trailing = false
		}
		i = j
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	return unsafe.String(unsafe.SliceData(out), len(out)), slash
}

// ambiguousSlashes reports whether the normalized path n, which kept encoded slashes, would
// resolve differently at an origin that decodes them before resolving dot segments and
// merging slashes (as NGINX does): /public%2F..%2F..%2Finternal is one segment here but
// /internal there. Such a path matches no route.
func ambiguousSlashes(n string) bool {
	dec := make([]byte, 0, len(n))
	for i := 0; i < len(n); i++ {
		if n[i] == '%' && i+2 < len(n) && n[i+1] == '2' && n[i+2] == 'F' || n[i] == '%' && i+2 < len(n) && n[i+1] == '5' && n[i+2] == 'C' {
			dec = append(dec, '/')
			i += 2
			continue
		}
		dec = append(dec, n[i])
	}
	d := string(dec)
	if !needsNormalizing(d) {
		return false
	}
	return normalizePath(d, make([]byte, 2*len(d)+2)) != d
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - ('a' - 'A')
	}
	return c
}

// configPath normalizes a route's path or prefix like request paths, so that a route written
// /%7Euser matches /~user and the reverse. A prefix keeps its trailing slash.
func configPath(p string) string {
	if !needsNormalizing(p) {
		return p
	}
	n := normalizePath(p, make([]byte, 2*len(p)+2))
	return string([]byte(n))
}
