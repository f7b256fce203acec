package router

import (
	"cmp"
	"slices"
	"strings"
	"unsafe"

	"github.com/verge-edge/verge/message"
)

// table finds the route for a request on one listener. Hosts are looked up in a map (exact
// names, then wildcard suffixes from the longest, then routes without a host condition);
// within a host, exact paths are a map lookup and prefixes a short list sorted longest
// first. When nothing matches under a more specific host, the less specific ones are tried.
// Matching does not allocate.
type table struct {
	exact map[string]*routeSet
	wild  map[string]*routeSet // key: ".example.com" for "*.example.com"
	any   *routeSet
}

// routeSet holds the routes of one host pattern.
type routeSet struct {
	exact  map[string][]*route // by exact path, each sorted by rank
	prefix []*route            // prefix routes and path-less routes (prefix ""), by rank
}

func newTable() *table {
	return &table{exact: map[string]*routeSet{}, wild: map[string]*routeSet{}}
}

func (t *table) add(r *route, hosts []string) {
	if len(hosts) == 0 {
		if t.any == nil {
			t.any = &routeSet{}
		}
		t.any.add(r)
		return
	}
	for _, h := range hosts {
		m, key := t.exact, h
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			m, key = t.wild, suffix
		}
		rs := m[key]
		if rs == nil {
			rs = &routeSet{}
			m[key] = rs
		}
		rs.add(r)
	}
}

func (rs *routeSet) add(r *route) {
	if r.path != "" {
		if rs.exact == nil {
			rs.exact = map[string][]*route{}
		}
		rs.exact[r.path] = append(rs.exact[r.path], r)
		slices.SortStableFunc(rs.exact[r.path], byRank)
		return
	}
	rs.prefix = append(rs.prefix, r)
	slices.SortStableFunc(rs.prefix, byRank)
}

// byRank orders routes of one host: longer prefix first, then more conditions, then file
// order.
func byRank(a, b *route) int {
	if c := cmp.Compare(len(b.prefix), len(a.prefix)); c != 0 {
		return c
	}
	if c := cmp.Compare(b.conditions(), a.conditions()); c != 0 {
		return c
	}
	return cmp.Compare(a.index, b.index)
}

func (rs *routeSet) match(path string, req *message.Request) *route {
	if rs == nil {
		return nil
	}
	if rs.exact != nil {
		for _, r := range rs.exact[path] {
			if r.matches(req) {
				return r
			}
		}
	}
	for _, r := range rs.prefix {
		if strings.HasPrefix(path, r.prefix) && r.matches(req) {
			return r
		}
	}
	return nil
}

// maxHostLen is the longest host name looked up (RFC 1035 section 2.3.4 allows 253 octets).
const maxHostLen = 253

// match returns the route for req, or nil.
func (t *table) match(req *message.Request) *route {
	host := req.Host()
	var buf [maxHostLen]byte
	if hasUpper(host) && len(host) <= maxHostLen {
		n := copy(buf[:], host)
		for i := range n {
			if c := buf[i]; c >= 'A' && c <= 'Z' {
				buf[i] = c + ('a' - 'A')
			}
		}
		host = unsafe.String(&buf[0], n)
	}
	// A fully qualified name's trailing dot does not change the host.
	host = strings.TrimSuffix(host, ".")
	path := req.Path()
	if needsNormalizing(path) {
		return t.matchNormalized(host, path, req)
	}
	return t.matchPath(host, path, req)
}

// matchNormalized matches the normalized form of path (normalize.go); it holds the buffer,
// so the common path without anything to normalize does not pay for it.
func (t *table) matchNormalized(host, path string, req *message.Request) *route {
	var scratch [2 * maxStackPath]byte
	n, slash := normalizePathSlash(path, scratch[:])
	if slash && ambiguousSlashes(n) {
		return nil
	}
	return t.matchPath(host, n, req)
}

func (t *table) matchPath(host, path string, req *message.Request) *route {
	if len(t.exact) > 0 {
		if r := t.exact[host].match(path, req); r != nil {
			return r
		}
	}
	if len(t.wild) > 0 {
		for i := 0; i < len(host); i++ {
			if host[i] == '.' {
				if r := t.wild[host[i:]].match(path, req); r != nil {
					return r
				}
			}
		}
	}
	return t.any.match(path, req)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}
