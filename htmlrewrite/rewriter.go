// Package htmlrewrite rewrites HTML as it streams, without holding the document: elements
// chosen by CSS selectors get their attributes changed, content inserted before, after or
// inside them, their content replaced, or are removed, while every other byte passes through
// unchanged. It is Verge's counterpart of Cloudflare's HTMLRewriter (lol-html).
//
// Rules hold the selectors and handlers; a Stream rewrites one document fed in chunks of any
// size (a chunk may end anywhere, inside a tag or a comment). Memory is bounded by the
// longest tag (MaxTagSize) and the open-element stack (MaxDepth), not by the document.
//
// The tokenizer follows the HTML tokenizer's states for tags, attributes, comments, bogus
// comments and the raw text of script, style, textarea, title, xmp, iframe, noembed and
// noframes; the tree is tracked as a stack of open elements with void elements and the
// common optional end tags (p, li, dt, dd, option, tr, td, th, thead, tbody, tfoot). It
// does not build the full HTML tree: mis-nested markup that a browser repairs by the
// adoption agency algorithm can make descendant selectors see a different nesting. A
// self-closing tag ("<x/>") closes its element, except for the raw text elements.
//
// It is pure Go with no imports outside the standard library, so workers (GOOS=wasip1) use
// it through the SDK (sdk.NewHTMLRewriter).
package htmlrewrite

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"unsafe"
)

// Limits of a Stream.
const (
	// MaxTagSize is the longest tag the rewriter parses (from "<" to ">", attributes
	// included). A longer one passes through as text, unmatched.
	MaxTagSize = 64 << 10
	// MaxDepth bounds the open-element stack; deeper elements pass through unmatched and
	// untracked.
	MaxDepth = 512
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

// Stream modes.
const (
	mText    = iota
	mTag     // inside a tag, from "<": the scanner state says where
	mComment // inside <!-- -->
	mBogus   // inside a bogus comment or declaration, up to ">"
	mRaw     // inside the raw text of a script, style, ... element
	mPlain   // after <plaintext>: text to the end
)

// Tag scanner states (the HTML tokenizer's, merged where they behave alike).
const (
	stLT         = iota // after "<"
	stEndLT             // after "</"
	stBang              // after "<!"
	stBangDash          // after "<!-"
	stTagName           // in the tag name
	stBeforeAttr        // before an attribute name (also after a quoted value)
	stAttrName          // in an attribute name
	stAfterName         // after an attribute name
	stBeforeVal         // after "="
	stDQ                // in a double-quoted value
	stSQ                // in a single-quoted value
	stUnquoted          // in an unquoted value
	stSlash             // after "/" in a tag
)

// entry is an open element.
type entry struct {
	name    string
	kind    uint8  // implied-end kind (kP, kLi, ...)
	removed bool   // start tag, content and end tag dropped
	extra   int32  // index+1 in Stream.extras of its pending insertions; 0 none
	matched uint64 // compounds matched at this element
	desc    uint64 // compounds matched at this element or an ancestor
}

// extra is what an open element inserts when it ends.
type extra struct {
	append []byte // before its end tag
	after  []byte // after its end tag
}

// Stream rewrites one document. Feed it with Rewrite and end it with End; it is not safe
// for concurrent use. Reset makes it ready for another document.
type Stream struct {
	r     *Rules
	dst   []byte
	mode  uint8
	st    uint8
	end   bool   // the tag being scanned is an end tag
	carry []byte // a tag, or the start of a raw text end tag, split across chunks
	// dashes counts the "-" just before the current position in a comment (2 at its
	// start, so that "<!-->" ends it as the HTML tokenizer does).
	dashes  int
	rawName string // the element whose raw text is being read
	stack   []entry
	deep    int // elements opened past MaxDepth, untracked
	supAt   int // index in stack of the element whose content is dropped; -1 none
	el      Element
	attrs   []attr
	lname   []byte
	names   [256]nameCache
	extras  []extra // of the open elements with insertions, a stack too
	chunk   []byte  // the chunk being rewritten
	pend    []byte  // bytes of chunk passed on but not yet copied to dst
	mask    uint64  // the compounds naming the tag tagName returned last
}

// NewStream returns a stream that rewrites one document with r.
func (r *Rules) NewStream() *Stream {
	s := &Stream{r: r}
	s.Reset()
	return s
}

// Reset drops the state of the current document.
func (s *Stream) Reset() {
	s.mode, s.st, s.end, s.dashes, s.rawName, s.deep = mText, 0, false, 0, "", 0
	s.carry = s.carry[:0]
	if cap(s.carry) > 4<<10 {
		s.carry = nil
	}
	s.stack = s.stack[:0]
	for i := range s.extras {
		s.extras[i] = extra{}
	}
	s.extras = s.extras[:0]
	s.supAt = -1
}

// emit passes b on. Bytes of the current chunk that follow one another are gathered and
// copied at once (flush): most of a document is copied in a few appends per chunk.
func (s *Stream) emit(b []byte) {
	if s.supAt >= 0 || len(b) == 0 {
		return
	}
	bp := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	c0 := uintptr(unsafe.Pointer(unsafe.SliceData(s.chunk)))
	inChunk := bp >= c0 && bp < c0+uintptr(len(s.chunk))
	if n := len(s.pend); inChunk && n > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(s.pend)))+uintptr(n) == bp {
		s.pend = s.pend[:n+len(b)]
		return
	}
	s.flush()
	if inChunk {
		s.pend = b
		return
	}
	s.dst = append(s.dst, b...)
}

// flush copies the gathered bytes of the chunk.
func (s *Stream) flush() {
	if len(s.pend) > 0 {
		s.dst = append(s.dst, s.pend...)
	}
	s.pend = nil
}

// Rewrite appends the rewritten form of the next chunk of the document to dst and returns
// the extended slice. Bytes that may belong to a tag continued in the next chunk are held
// back until it arrives.
func (s *Stream) Rewrite(dst, p []byte) []byte {
	s.dst = dst
	s.chunk = p
	for len(p) > 0 {
		switch s.mode {
		case mText:
			p = s.text(p)
		case mTag:
			p = s.scanTag(p, 0)
		case mComment:
			p = s.comment(p)
		case mBogus:
			i := bytes.IndexByte(p, '>')
			if i < 0 {
				s.emit(p)
				p = nil
				break
			}
			s.emit(p[:i+1])
			s.mode = mText
			p = p[i+1:]
		case mRaw:
			p = s.raw(p)
		case mPlain:
			s.emit(p)
			p = nil
		}
	}
	s.flush()
	dst = s.dst
	s.dst, s.chunk = nil, nil
	return dst
}

// text passes on text and handles the tags in it until the chunk ends or the mode changes.
// A tag that ends in the chunk is scanned in one pass (fastTag); one that goes on in the
// next chunk, or that is not a start or end tag, by the state machine (scanTag).
func (s *Stream) text(p []byte) []byte {
	// p[from:i] passes on unchanged and is emitted at once, when something else comes.
	from, i := 0, 0
	for i < len(p) {
		j := indexByte(p[i:], '<')
		if j < 0 {
			break
		}
		i += j
		gt, nameEnd, end, slash := fastTag(p[i:])
		if gt == 0 {
			s.emit(p[from:i])
			s.mode, s.st, s.end = mTag, stLT, false
			return s.scanTag(p[i:], 1)
		}
		tag := p[i : i+gt+1]
		if len(s.stack) == 0 && s.deep == 0 && (end || !s.r.mayMatter(tag[1]|0x20, nameEnd-1)) {
			// Most tags: no element is tracked, and no compound names this one.
			i += gt + 1
			continue
		}
		s.emit(p[from:i])
		i += gt + 1
		from = i
		s.end = end
		if end {
			s.endTag(tag)
		} else {
			s.startTag(tag, slash)
			if s.mode != mText {
				return p[i:]
			}
		}
	}
	s.emit(p[from:])
	return nil
}

// End appends what the document still holds back (an unfinished tag passes as text) and
// the content inserted at the end of elements left open, and ends the document.
func (s *Stream) End(dst []byte) []byte {
	s.dst = dst
	s.emit(s.carry)
	s.carry = s.carry[:0]
	for len(s.stack) > 0 {
		s.pop(len(s.stack)-1, nil)
	}
	dst = s.dst
	s.dst = nil
	s.Reset()
	return dst
}

// scanTag runs the tag scanner over p from index from. When the tag started in an earlier
// chunk its bytes are in s.carry; otherwise it starts at p[0]. It returns the rest of p.
func (s *Stream) scanTag(p []byte, from int) []byte {
	i := from
	// The state lives in a local while scanning and is stored back on return.
	st := s.st
	for ; i < len(p); i++ {
		c := p[i]
		switch st {
		case stLT:
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				st = stTagName
			case c == '/':
				st = stEndLT
			case c == '!':
				st = stBang
			case c == '?':
				return s.toMode(p, i+1, mBogus)
			default:
				// "<" that starts no tag is text.
				return s.toMode(p, i, mText)
			}
		case stEndLT:
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				st, s.end = stTagName, true
			case c == '>':
				return s.toMode(p, i+1, mText)
			default:
				return s.toMode(p, i, mBogus)
			}
		case stBang:
			if c == '-' {
				st = stBangDash
			} else {
				return s.toMode(p, i, mBogus)
			}
		case stBangDash:
			if c == '-' {
				s.dashes = 2
				return s.toMode(p, i+1, mComment)
			}
			return s.toMode(p, i, mBogus)
		case stTagName:
			for i < len(p)-1 && cls[c] == 0 {
				i++
				c = p[i]
			}
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case isSpace(c):
				st = stBeforeAttr
			}
		case stBeforeAttr:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case !isSpace(c):
				st = stAttrName
			}
		case stAttrName:
			for i < len(p)-1 && cls[c] == 0 {
				i++
				c = p[i]
			}
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case c == '=':
				st = stBeforeVal
			case isSpace(c):
				st = stAfterName
			}
		case stAfterName:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case c == '=':
				st = stBeforeVal
			case !isSpace(c):
				st = stAttrName
			}
		case stBeforeVal:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '"':
				st = stDQ
			case c == '\'':
				st = stSQ
			case !isSpace(c):
				st = stUnquoted
			}
		case stDQ:
			// Skip to the closing quote at once.
			j := bytes.IndexByte(p[i:], '"')
			if j < 0 {
				i = len(p) - 1
				continue
			}
			i += j
			st = stBeforeAttr
		case stSQ:
			j := bytes.IndexByte(p[i:], '\'')
			if j < 0 {
				i = len(p) - 1
				continue
			}
			i += j
			st = stBeforeAttr
		case stUnquoted:
			for i < len(p)-1 && cls[c] == 0 {
				i++
				c = p[i]
			}
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case isSpace(c):
				st = stBeforeAttr
			}
		case stSlash:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
			case isSpace(c):
				st = stBeforeAttr
			default:
				st = stAttrName
			}
		}
	}
	// The tag goes on in the next chunk.
	s.st = st
	s.carry = append(s.carry, p...)
	if len(s.carry) > MaxTagSize {
		// Too long to be a tag worth parsing: pass it on as text.
		s.emit(s.carry)
		s.carry = s.carry[:0]
		s.mode = mText
	}
	return nil
}

// fastTag scans the start or end tag at the start of p (p[0] is "<") when it ends in p. It
// returns the index of its ">", the index just past its name (as tagName reads it), whether
// it is an end tag and whether it is written self-closing; gt is 0 when p does not start with "<" and a letter (or "</" and a letter)
// or the tag goes on past p. It makes the transitions of scanTag's states stTagName to
// stSlash, with the state held by the position in the code rather than in a variable.
func fastTag(p []byte) (gt, nameEnd int, end, slash bool) {
	n := len(p)
	i := 1
	if n < 3 {
		return 0, 0, false, false
	}
	if p[1] == '/' {
		end = true
		i = 2
	}
	if c := p[i] | 0x20; c < 'a' || c > 'z' {
		return 0, 0, false, false
	}
	// stTagName ("=" belongs to the scanned name, though not to the name tagName reads).
	for i++; ; i++ {
		for i < n && cls[p[i]] == 0 {
			i++
		}
		if i >= n {
			return 0, 0, false, false
		}
		if nameEnd == 0 {
			nameEnd = i
		}
		if c := p[i]; c == '>' {
			return i, nameEnd, end, false
		} else if c == '/' {
			goto slashState
		} else if c != '=' {
			goto beforeAttr // a space
		}
	}
beforeAttr:
	for i++; i < n && isSpace(p[i]); i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch p[i] {
	case '>':
		return i, nameEnd, end, false
	case '/':
		goto slashState
	}
attrName: // p[i] is the name's first byte, which may be "="
	for i++; i < n && cls[p[i]] == 0; i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch c := p[i]; {
	case c == '>':
		return i, nameEnd, end, false
	case c == '/':
		goto slashState
	case c == '=':
		goto beforeVal
	}
	// afterName
	for i++; i < n && isSpace(p[i]); i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch p[i] {
	case '>':
		return i, nameEnd, end, false
	case '/':
		goto slashState
	case '=':
		goto beforeVal
	}
	goto attrName
beforeVal:
	for i++; i < n && isSpace(p[i]); i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch q := p[i]; q {
	case '>':
		return i, nameEnd, end, false
	case '"', '\'':
		j := indexByte(p[i+1:], q)
		if j < 0 {
			return 0, 0, false, false
		}
		i += j + 1
		goto beforeAttr
	}
	// stUnquoted: "/" and "=" belong to the value.
	for {
		for i++; i < n && cls[p[i]] == 0; i++ {
		}
		if i >= n {
			return 0, 0, false, false
		}
		if c := p[i]; c == '>' {
			return i, nameEnd, end, false
		} else if isSpace(c) {
			goto beforeAttr
		}
	}
slashState:
	for i++; i < n && p[i] == '/'; i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch c := p[i]; {
	case c == '>':
		return i, nameEnd, end, true
	case isSpace(c):
		goto beforeAttr
	}
	goto attrName
}

// indexByte is bytes.IndexByte for the short runs between the tags of a document and the
// short attribute values: it looks at the first bytes itself, which costs less than the
// call when the byte is near.
func indexByte(b []byte, c byte) int {
	n := min(len(b), 16)
	for i := 0; i < n; i++ {
		if b[i] == c {
			return i
		}
	}
	if n == len(b) {
		return -1
	}
	if j := bytes.IndexByte(b[n:], c); j >= 0 {
		return n + j
	}
	return -1
}

// cls marks the bytes that change the tag scanner's state in names and unquoted values.
var cls = func() (t [256]uint8) {
	for _, c := range []byte(" \t\n\r\f>/=") {
		t[c] = 1
	}
	return t
}()

// toMode ends the scan of what turned out not to be a tag: the bytes up to p[i] are passed
// on and the stream continues in mode m with p[i:].
func (s *Stream) toMode(p []byte, i int, m uint8) []byte {
	s.emit(s.carry)
	s.carry = s.carry[:0]
	s.emit(p[:i])
	s.mode = m
	return p[i:]
}

// tagDone handles the tag ending at p[i] (">").
func (s *Stream) tagDone(p []byte, i int) []byte {
	tag := p[:i+1]
	if len(s.carry) > 0 {
		s.carry = append(s.carry, tag...)
		tag = s.carry
	}
	selfClosing := s.st == stSlash
	s.mode = mText
	if s.end {
		s.endTag(tag)
	} else {
		s.startTag(tag, selfClosing)
	}
	s.carry = s.carry[:0]
	return p[i+1:]
}

// comment passes on comment text up to and including "-->".
func (s *Stream) comment(p []byte) []byte {
	for {
		i := bytes.IndexByte(p, '>')
		if i < 0 {
			s.dashes = trailingDashes(p, s.dashes)
			s.emit(p)
			return nil
		}
		if trailingDashes(p[:i], s.dashes) >= 2 {
			s.emit(p[:i+1])
			s.mode = mText
			return p[i+1:]
		}
		s.emit(p[:i+1])
		p = p[i+1:]
		s.dashes = 0
	}
}

// trailingDashes counts the "-" ending b (up to 2), continuing prev when b is all dashes.
func trailingDashes(b []byte, prev int) int {
	n := 0
	for n < 2 && n < len(b) && b[len(b)-1-n] == '-' {
		n++
	}
	if n == len(b) {
		n += prev
	}
	return min(n, 2)
}

// raw passes on raw text up to the end tag of s.rawName, which it hands to the tag scanner.
// A possible end tag split across chunks waits in s.carry.
func (s *Stream) raw(p []byte) []byte {
	name := s.rawName
	for len(p) > 0 {
		if len(s.carry) == 0 {
			i := bytes.IndexByte(p, '<')
			if i < 0 {
				s.emit(p)
				return nil
			}
			s.emit(p[:i])
			s.carry = append(s.carry, '<')
			p = p[i+1:]
			continue
		}
		k := len(s.carry) // bytes of "</name" matched
		c := p[0]
		switch {
		case k == 1 && c == '/', k >= 2 && k < 2+len(name) && lowerByte(c) == name[k-2]:
			s.carry = append(s.carry, c)
			p = p[1:]
		case k == 2+len(name) && (isSpace(c) || c == '/' || c == '>'):
			// The end tag: scan it as a tag from here.
			s.mode, s.st, s.end = mTag, stTagName, true
			s.rawName = ""
			return p
		default:
			s.emit(s.carry)
			s.carry = s.carry[:0]
			if c != '<' {
				s.emit(p[:1])
				p = p[1:]
			}
		}
	}
	return nil
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// tagName returns the lowercase name of a tag, its flags and the index just past it.
func (s *Stream) tagName(tag []byte) (string, tagFlags, int) {
	i := 1
	if s.end {
		i = 2
	}
	j := i
	var seen uint8 // nameTab bits of the name's bytes
	for j < len(tag) {
		t := nameTab[tag[j]]
		if t&nEnd != 0 {
			break
		}
		seen |= t
		j++
	}
	raw := tag[i:j]
	if seen&nUpper != 0 {
		s.lname = s.lname[:0]
		for _, c := range raw {
			s.lname = append(s.lname, lowerByte(c))
		}
		raw = s.lname
	}
	// A direct-mapped cache of the names seen last saves the table's search.
	h := nameSlot(raw)
	if ce := &s.names[h]; ce.name != "" && ce.name == string(raw) {
		s.mask = ce.mask
		return ce.name, ce.flags, j
	}
	n, f := tagInfo(raw)
	if n == "" {
		n = string(raw)
	}
	s.mask = s.r.byTag[n]
	s.names[h] = nameCache{name: n, flags: f, mask: s.mask}
	return n, f, j
}

// nameTab classifies the bytes of a tag name: nEnd ends it (the bytes of cls), nUpper is
// an upper case ASCII letter.
var nameTab = func() (t [256]uint8) {
	for c := range 256 {
		if cls[c] != 0 {
			t[c] = nEnd
		} else if c >= 'A' && c <= 'Z' {
			t[c] = nUpper
		}
	}
	return t
}()

const (
	nEnd = 1 << iota
	nUpper
)

type nameCache struct {
	name  string
	flags tagFlags
	mask  uint64 // the compounds that name this tag
}

func nameSlot(b []byte) uint8 {
	if len(b) == 0 {
		return 0
	}
	return uint8(len(b)*31) ^ b[0]*7 ^ b[len(b)-1]
}

// candidates returns the compounds an element whose parent is top may match.
func (s *Stream) candidates() uint64 {
	r := s.r
	c := r.first
	if n := len(s.stack); n > 0 {
		top := &s.stack[n-1]
		c |= (top.matched&r.child)<<1 | (top.desc&r.desc)<<1
	}
	return c
}

func (s *Stream) startTag(tag []byte, selfClosing bool) {
	name, flags, nameEnd := s.tagName(tag)
	// Without combinators, open elements are tracked only from one that inserts content
	// at its end (or is removed) until it ends: the rest of the document costs no stack.
	track := s.r.child|s.r.desc != 0 || len(s.stack) > 0 || s.deep > 0
	for n := len(s.stack); n > 0 && impliedEnd(s.stack[n-1].kind, flags); n = len(s.stack) {
		s.pop(n-1, nil)
	}
	void := flags&fVoid != 0
	rawText := flags&fRaw != 0
	slash := selfClosing
	if rawText {
		selfClosing = false
	}
	opens := !void && !selfClosing
	var matched uint64
	e := &s.el
	handled := false
	if cand := s.candidates() & (s.mask | s.r.anyTag); cand != 0 && s.supAt < 0 && s.deep == 0 {
		e.reset(s, tag, name, nameEnd, void || selfClosing, slash)
		for cand != 0 {
			j := bits.TrailingZeros64(cand)
			cand &^= 1 << j
			if s.r.comps[j].matches(e) {
				matched |= 1 << j
			}
		}
		if matched != 0 {
			for _, ru := range s.r.rules {
				if ru.last&matched != 0 {
					ru.h(e)
					handled = true
				}
			}
		}
	}
	if !handled {
		s.emit(tag)
		if opens && track {
			s.push(name, flags.kind(), matched, nil, nil, false)
		}
	} else {
		s.emit(e.before)
		if !e.removed {
			if e.attrsChanged && s.supAt < 0 {
				s.flush()
				s.dst = e.serialize(s.dst)
			} else {
				s.emit(tag)
			}
		}
		if opens {
			if !e.removed {
				s.emit(e.prepend)
				if e.innerSet {
					s.emit(e.inner)
				}
			}
			if track || e.removed || e.innerSet || len(e.append) > 0 || len(e.after) > 0 {
				s.push(name, flags.kind(), matched, cloneBytes(e.append), cloneBytes(e.after), e.removed)
				if (e.removed || e.innerSet) && s.supAt < 0 && s.deep == 0 {
					s.supAt = len(s.stack) - 1
				}
			}
		} else {
			s.emit(e.after)
		}
		e.clear()
	}
	switch {
	case !opens:
	case rawText:
		s.mode, s.rawName = mRaw, name
	case flags&fPlain != 0:
		s.mode = mPlain
	}
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func (s *Stream) push(name string, kind uint8, matched uint64, app, after []byte, removed bool) {
	if len(s.stack) >= MaxDepth || s.deep > 0 {
		s.deep++
		return
	}
	var desc uint64
	if n := len(s.stack); n > 0 {
		desc = s.stack[n-1].desc
	}
	var x int32
	if len(app) > 0 || len(after) > 0 {
		s.extras = append(s.extras, extra{append: app, after: after})
		x = int32(len(s.extras))
	}
	s.stack = append(s.stack, entry{name: name, kind: kind, matched: matched, desc: desc | matched, extra: x, removed: removed})
}

// pop closes the open element at index k and every element above it; endTag is the tag
// that closes it (nil when closed implicitly or at the end of the document).
func (s *Stream) pop(k int, endTag []byte) {
	for n := len(s.stack) - 1; n >= k; n-- {
		e := &s.stack[n]
		if s.supAt == n {
			s.supAt = -1
		}
		var x extra
		if e.extra > 0 {
			x = s.extras[e.extra-1]
			s.extras[e.extra-1] = extra{}
			s.extras = s.extras[:e.extra-1]
		}
		if !e.removed {
			s.emit(x.append)
			if n == k {
				s.emit(endTag)
			}
		}
		s.emit(x.after)
		s.stack = s.stack[:n]
	}
}

func (s *Stream) endTag(tag []byte) {
	if len(s.stack) == 0 && s.deep == 0 {
		s.emit(tag) // nothing tracked
		return
	}
	if n := len(s.stack); n > 0 && s.deep == 0 && endTagIs(tag, s.stack[n-1].name) {
		s.pop(n-1, tag) // the common case: the innermost element ends
		return
	}
	name, _, _ := s.tagName(tag)
	if s.deep > 0 {
		// Inside untracked depth: a closing tag ends one of those elements.
		s.deep--
		s.emit(tag)
		return
	}
	for k := len(s.stack) - 1; k >= 0; k-- {
		if s.stack[k].name == name {
			s.pop(k, tag)
			return
		}
	}
	if s.r.child|s.r.desc == 0 && len(s.stack) > 0 {
		// Only part of the tree is tracked: an end tag of none of its elements closes an
		// element around them, and so ends them all.
		s.pop(0, nil)
	}
	s.emit(tag)
}

type tagFlags uint16

const (
	fVoid    tagFlags = 1 << iota // no content, no end tag
	fRaw                          // raw text or RCDATA content
	fClosesP                      // its start tag closes an open p
	fPlain                        // plaintext: text to the end

	kindShift = 8 // the implied-end kind sits in the high byte
)

// Kinds of elements with optional end tags.
const (
	kNone = iota
	kP
	kLi
	kDtDd
	kOption
	kOptgroup
	kCell
	kRow
	kSection
)

func (f tagFlags) kind() uint8 { return uint8(f >> kindShift) }

// endTagIs reports whether the end tag tag ("</name ...>") closes name (lowercase).
func endTagIs(tag []byte, name string) bool {
	if len(tag) < len(name)+3 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if lowerByte(tag[2+i]) != name[i] {
			return false
		}
	}
	return cls[tag[2+len(name)]] != 0
}

// impliedEnd reports whether a start tag with flags next closes an open element of kind
// top (the optional end tags of HTML, section 13.1.2.4).
func impliedEnd(top uint8, next tagFlags) bool {
	nk := next.kind()
	switch top {
	case kNone:
		return false
	case kP:
		return next&fClosesP != 0
	case kLi:
		return nk == kLi
	case kDtDd:
		return nk == kDtDd
	case kOption:
		return nk == kOption || nk == kOptgroup
	case kCell:
		return nk == kCell || nk == kRow || nk == kSection
	case kRow:
		return nk == kRow || nk == kSection
	case kSection:
		return nk == kSection
	}
	return false
}

// Reader returns a reader of src's document rewritten with r. Closing it closes src when
// src is an io.Closer.
func (r *Rules) Reader(src io.Reader) io.ReadCloser {
	return &reader{src: src, s: r.NewStream(), buf: make([]byte, 32<<10)}
}

type reader struct {
	src  io.Reader
	s    *Stream
	buf  []byte
	out  []byte
	off  int
	done bool
	err  error
}

func (r *reader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.done {
			return 0, r.err
		}
		r.out, r.off = r.out[:0], 0
		n, err := r.src.Read(r.buf)
		if n > 0 {
			r.out = r.s.Rewrite(r.out, r.buf[:n])
		}
		if err == io.EOF {
			r.out = r.s.End(r.out)
			r.done, r.err = true, io.EOF
		} else if err != nil {
			r.done, r.err = true, err
		}
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

func (r *reader) Close() error {
	if c, ok := r.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Writer returns a writer that rewrites the document written to it with r and writes the
// result to dst. Close ends the document (it does not close dst).
func (r *Rules) Writer(dst io.Writer) io.WriteCloser {
	return &writer{dst: dst, s: r.NewStream()}
}

type writer struct {
	dst io.Writer
	s   *Stream
	out []byte
}

func (w *writer) Write(p []byte) (int, error) {
	w.out = w.s.Rewrite(w.out[:0], p)
	if len(w.out) > 0 {
		if _, err := w.dst.Write(w.out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *writer) Close() error {
	w.out = w.s.End(w.out[:0])
	if len(w.out) > 0 {
		_, err := w.dst.Write(w.out)
		return err
	}
	return nil
}
