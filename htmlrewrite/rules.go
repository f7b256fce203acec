package htmlrewrite

import (
	"errors"
)

// Handler is called for each start tag an On selector matches, with the element. The
// Element is valid only during the call.
type Handler func(e *Element)

// rule is one On call: its handler and the bits of the last compounds of its selectors.
type rule struct {
	h    Handler
	last uint64
}

// Rules is a set of selectors and their handlers. Build it with On before the first
// NewStream; it is then read-only and may serve many streams concurrently.
type Rules struct {
	comps []compound
	first uint64 // compounds that start a selector
	child uint64 // bit j-1 set: compound j is joined by ">" to j-1
	desc  uint64 // bit j-1 set: compound j is joined by a descendant space to j-1
	rules []rule
	err   error
	// byTag holds, per tag name, the compounds that name it; anyTag the compounds that
	// name none.
	byTag  map[string]uint64
	anyTag uint64
	// tagBits has, for each first letter of the tag names the compounds name, bit
	// min(len(name), 15) set; anyName is set when a name does not fit it (its first byte
	// is not a lowercase ASCII letter, or it has bytes past ASCII). With rawBits they let a
	// start tag that no compound can match be passed on from its first letter and length.
	tagBits [26]uint16
	anyName bool
}

// rawBits is tagBits for the elements whose start tag changes the tokenizer's mode.
var rawBits = func() (t [26]uint16) {
	for _, n := range []string{"iframe", "noembed", "noframes", "plaintext", "script", "style", "textarea", "title", "xmp"} {
		t[n[0]-'a'] |= nameLenBit(len(n))
	}
	return t
}()

func nameLenBit(n int) uint16 { return 1 << min(n, 15) }

// mayMatter reports whether a start tag whose name begins with c (lowered by 0x20) and is
// n bytes long may match a compound or change the mode: when it does not, and no element
// is tracked, the tag needs no more than to be passed on.
func (r *Rules) mayMatter(c byte, n int) bool {
	if r.anyTag != 0 || r.anyName || r.child|r.desc != 0 || c < 'a' || c > 'z' {
		return true
	}
	return (r.tagBits[c-'a']|rawBits[c-'a'])&nameLenBit(n) != 0
}

// NewRules returns an empty set of rules: a stream built from it passes documents through.
func NewRules() *Rules { return &Rules{} }

// On adds a handler for the elements matching selector, a comma-separated list of complex
// selectors: type (tag), "*", #id, .class, [attr], [attr=v], [attr~=v], [attr^=v],
// [attr$=v], [attr*=v] and [attr|=v] (values quoted or not), joined by descendant
// (whitespace) and child (">") combinators. Handlers run in the order they were added. An
// invalid selector is reported by Err (and On keeps returning r, for chaining).
func (r *Rules) On(selector string, h Handler) *Rules {
	if r.err != nil {
		return r
	}
	list, err := parseSelectorList(selector)
	if err != nil {
		r.err = err
		return r
	}
	var last uint64
	for _, sel := range list {
		if len(r.comps)+len(sel) > MaxCompounds {
			r.err = errors.New("htmlrewrite: too many selectors (at most 64 compounds in all)")
			return r
		}
		base := len(r.comps)
		for j, c := range sel {
			idx := base + j
			if j == 0 {
				r.first |= 1 << idx
			} else if c.child {
				r.child |= 1 << (idx - 1)
			} else {
				r.desc |= 1 << (idx - 1)
			}
			r.comps = append(r.comps, c)
			if c.tag == "" {
				r.anyTag |= 1 << idx
			} else {
				if r.byTag == nil {
					r.byTag = map[string]uint64{}
				}
				r.byTag[c.tag] |= 1 << idx
				if t := c.tag; t[0] < 'a' || t[0] > 'z' || !isASCII(t) {
					r.anyName = true
				} else {
					r.tagBits[t[0]-'a'] |= nameLenBit(len(t))
				}
			}
		}
		last |= 1 << (len(r.comps) - 1)
	}
	r.rules = append(r.rules, rule{h: h, last: last})
	return r
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Err reports the first invalid selector given to On.
func (r *Rules) Err() error { return r.err }
