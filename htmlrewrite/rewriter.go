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
		if p[i] != '<' { // often a tag follows a tag
			j := indexByte(p[i:], '<')
			if j < 0 {
				break
			}
			i += j
		}
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
