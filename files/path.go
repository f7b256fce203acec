package files

import (
	"net/url"
	"strings"
)

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
	dec, err := url.PathUnescape(p) // once; a malformed escape is an error
	if err != nil {
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

// lastSegmentHasDot reports whether the last segment of a cleaned relative name has a "."
// (looks like a file with an extension: an asset, not an application route).
func lastSegmentHasDot(rel string) bool {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		rel = rel[i+1:]
	}
	return strings.IndexByte(rel, '.') >= 0
}
