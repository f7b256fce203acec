// Package acl decides whether a client address may connect or send a request, from allow and
// deny lists of addresses and CIDR prefixes, given inline or in files that are re-read when
// they change.
package acl

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Set is a set of prefixes, looked up by address: one map lookup per distinct prefix length
// present, so a list of a hundred thousand /32s and /24s costs two lookups.
type Set struct {
	v4, v6 []lenSet // by decreasing length
	n      int
}

type lenSet struct {
	bits int
	m    map[netip.Prefix]struct{}
}

// NewSet returns the set of prefixes.
func NewSet(prefixes []netip.Prefix) *Set {
	s := &Set{}
	for _, p := range prefixes {
		s.add(p)
	}
	less := func(a, b lenSet) int { return b.bits - a.bits }
	slices.SortFunc(s.v4, less)
	slices.SortFunc(s.v6, less)
	return s
}

func (s *Set) add(p netip.Prefix) {
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked()
	list := &s.v6
	if p.Addr().Is4() {
		list = &s.v4
	}
	for i := range *list {
		if (*list)[i].bits == p.Bits() {
			if _, dup := (*list)[i].m[p]; !dup {
				(*list)[i].m[p] = struct{}{}
				s.n++
			}
			return
		}
	}
	*list = append(*list, lenSet{bits: p.Bits(), m: map[netip.Prefix]struct{}{p: {}}})
	s.n++
}

// unmapBits is how many bits a v4-mapped v6 prefix loses when unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// Len is the number of distinct prefixes.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Contains reports whether a is in one of the set's prefixes. A nil set contains nothing.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	a = a.Unmap()
	list := s.v6
	if a.Is4() {
		list = s.v4
	}
	for i := range list {
		p, err := a.Prefix(list[i].bits)
		if err != nil {
			continue
		}
		if _, ok := list[i].m[p]; ok {
			return true
		}
	}
	return false
}

// Rules are an allow list and a deny list. An address is refused when it is in Deny, or
// when Restrict is set (an allow list was configured) and the address is not in Allow:
// deny wins, and an allow list that is configured but empty (a file truncated while being
// rewritten) refuses everyone rather than opening to everyone.
type Rules struct {
	Allow, Deny *Set
	Restrict    bool
}

// Allowed applies the rules to a. The zero Rules allow everything.
func (r *Rules) Allowed(a netip.Addr) bool {
	if r.Deny.Contains(a) {
		return false
	}
	return !r.Restrict && r.Allow.Len() == 0 || r.Allow.Contains(a)
}

// ParsePrefix parses an address (a prefix of all its bits) or a CIDR prefix, masked.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR prefix %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q (want an address or a CIDR prefix)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseList parses a list file: one address or CIDR prefix per line; blank lines and text
// after '#' are ignored. Errors name the file and line.
func ParseList(name string, data []byte) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		t := sc.Text()
		if i := strings.IndexByte(t, '#'); i >= 0 {
			t = t[:i]
		}
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		p, err := ParsePrefix(t)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// LoadList reads and parses a list file.
func LoadList(path string) ([]netip.Prefix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseList(path, b)
}

// Source is where Rules come from: inline prefixes and list files.
type Source struct {
	Allow, Deny           []netip.Prefix
	AllowFiles, DenyFiles []string
}

// Build reads the files and returns the rules.
func (src *Source) Build() (*Rules, error) {
	allow, err := gather(src.Allow, src.AllowFiles)
	if err != nil {
		return nil, err
	}
	deny, err := gather(src.Deny, src.DenyFiles)
	if err != nil {
		return nil, err
	}
	r := &Rules{Restrict: len(src.Allow)+len(src.AllowFiles) > 0}
	if len(allow) > 0 {
		r.Allow = NewSet(allow)
	}
	if len(deny) > 0 {
		r.Deny = NewSet(deny)
	}
	return r, nil
}

func gather(inline []netip.Prefix, files []string) ([]netip.Prefix, error) {
	out := slices.Clone(inline)
	for _, f := range files {
		ps, err := LoadList(f)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}
