package files

import "strings"

// cleanPath turns a request path into a name relative to the root for os.Root, or a status
// refusing it. The path is percent-decoded once; then a NUL, a backslash (a separator on
// Windows, and never a file name character worth serving), an invalid escape or a ".."
// segment is refused with 400 instead of being resolved: a client asking for one is
// probing. "." and empty segments are dropped. A segment starting with "." (a dotfile or dot
// directory) is refused with 404 unless hidden is set, except ".well-known" (RFC 8615).
// slash reports whether the path ends with "/".
func cleanPath(p string, hidden bool) (rel string, slash bool, status int) {
	if p == "" || p[0] != '/' {
		return "", false, 400
	}
	dec, ok := unescape(p)
	if !ok {
		return "", false, 400
	}
	if strings.ContainsAny(dec, "\x00\\") {
		return "", false, 400
	}
	slash = strings.HasSuffix(dec, "/")
	var b strings.Builder
	b.Grow(len(dec))
	for seg := range strings.SplitSeq(dec, "/") {
		switch {
		case seg == "" || seg == ".":
			continue
		case seg == "..":
			return "", false, 400
		case seg[0] == '.' && !hidden && seg != ".well-known":
			return "", false, 404
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(seg)
	}
	if b.Len() == 0 {
		return ".", true, 0
	}
	return b.String(), slash, 0
}

// unescape percent-decodes s; ok is false for a malformed escape.
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
		i += 2
	}
	return string(b), true
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

// lastSegmentHasDot reports whether the last segment of a cleaned relative name has a "."
// (looks like a file with an extension: an asset, not an application route).
func lastSegmentHasDot(rel string) bool {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		rel = rel[i+1:]
	}
	return strings.IndexByte(rel, '.') >= 0
}
