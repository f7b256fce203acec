package htmlrewrite

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// MaxCompounds bounds the compound selectors (the parts between combinators, summed over
// every selector of a Rules): matching keeps one bit per compound for every open element.
const MaxCompounds = 64

// attrOp is an attribute selector's operator.
type attrOp uint8

const (
	opExists   attrOp = iota // [a]
	opEquals                 // [a=v]
	opWord                   // [a~=v]: v is one of the whitespace-separated words
	opPrefix                 // [a^=v]
	opSuffix                 // [a$=v]
	opContains               // [a*=v]
	opDash                   // [a|=v]: v, or v followed by "-"
)

type attrSel struct {
	name string // lowercase
	op   attrOp
	val  string
	valB []byte
}

// compound is one compound selector: an optional type and any number of id, class and
// attribute conditions, all of which must hold.
type compound struct {
	tag   string // lowercase; "" or "*" for any
	id    string
	class []string
	attrs []attrSel
	child bool // joined to the previous compound by ">" (else by a descendant space)
}

// parseSelectorList parses a comma-separated list of complex selectors.
func parseSelectorList(s string) ([][]compound, error) {
	var out [][]compound
	for _, part := range strings.Split(s, ",") {
		c, err := parseComplex(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("selector %q: %w", s, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func isIdentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80
}

func isSpace(c byte) bool { return spaceTab[c] }

// spaceTab marks the ASCII whitespace bytes of HTML: a lookup costs less than five compares
// in the tokenizer's loops.
var spaceTab = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, '\f': true}

// parseComplex parses compounds joined by descendant (whitespace) and child (">")
// combinators.
func parseComplex(s string) ([]compound, error) {
	if s == "" {
		return nil, errors.New("empty selector")
	}
	var out []compound
	i := 0
	child := false
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '>' {
			if len(out) == 0 || child {
				return nil, errors.New("\">\" needs a selector on each side")
			}
			child = true
			i++
			continue
		}
		if i == len(s) {
			break
		}
		c, n, err := parseCompound(s[i:])
		if err != nil {
			return nil, err
		}
		c.child = child
		child = false
		out = append(out, c)
		i += n
	}
	if child {
		return nil, errors.New("\">\" needs a selector on each side")
	}
	return out, nil
}

func ident(s string) (string, int) {
	n := 0
	for n < len(s) && (isIdentChar(s[n]) || s[n] == '\\' && n+1 < len(s)) {
		if s[n] == '\\' {
			n++
		}
		n++
	}
	return strings.ReplaceAll(s[:n], "\\", ""), n
}

func parseCompound(s string) (compound, int, error) {
	var c compound
	i := 0
	if i < len(s) && s[i] == '*' {
		i++
	} else if name, n := ident(s); n > 0 {
		c.tag = strings.ToLower(name)
		i += n
	}
	for i < len(s) && !isSpace(s[i]) && s[i] != '>' {
		switch s[i] {
		case '#':
			name, n := ident(s[i+1:])
			if n == 0 {
				return c, 0, errors.New("\"#\" needs an id")
			}
			c.id = name
			i += 1 + n
		case '.':
			name, n := ident(s[i+1:])
			if n == 0 {
				return c, 0, errors.New("\".\" needs a class name")
			}
			c.class = append(c.class, name)
			i += 1 + n
		case '[':
			a, n, err := parseAttrSel(s[i:])
			if err != nil {
				return c, 0, err
			}
			c.attrs = append(c.attrs, a)
			i += n
		case ':':
			return c, 0, fmt.Errorf("pseudo-classes are not supported (at %q)", s[i:])
		default:
			return c, 0, fmt.Errorf("unexpected %q (supported: tag, *, #id, .class, [attr], [attr=v], [attr~=v], [attr^=v], [attr$=v], [attr*=v], [attr|=v], descendant and \">\" combinators)", s[i:])
		}
	}
	if i == 0 {
		return c, 0, fmt.Errorf("unexpected %q", s)
	}
	return c, i, nil
}

// parseAttrSel parses "[name]", "[name op value]" with value quoted or an identifier.
func parseAttrSel(s string) (attrSel, int, error) {
	var a attrSel
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return a, 0, errors.New("unclosed \"[\"")
	}
	// A quoted value may hold "]": find the end after the quotes.
	body := s[1:]
	i := 0
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	name, n := ident(body[i:])
	if n == 0 {
		return a, 0, errors.New("\"[\" needs an attribute name")
	}
	a.name = strings.ToLower(name)
	i += n
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i < len(body) && body[i] == ']' {
		return a, i + 2, nil
	}
	switch {
	case strings.HasPrefix(body[i:], "="):
		a.op, i = opEquals, i+1
	case strings.HasPrefix(body[i:], "~="):
		a.op, i = opWord, i+2
	case strings.HasPrefix(body[i:], "^="):
		a.op, i = opPrefix, i+2
	case strings.HasPrefix(body[i:], "$="):
		a.op, i = opSuffix, i+2
	case strings.HasPrefix(body[i:], "*="):
		a.op, i = opContains, i+2
	case strings.HasPrefix(body[i:], "|="):
		a.op, i = opDash, i+2
	default:
		return a, 0, fmt.Errorf("unsupported attribute selector %q", s)
	}
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i < len(body) && (body[i] == '"' || body[i] == '\'') {
		q := body[i]
		j := strings.IndexByte(body[i+1:], q)
		if j < 0 {
			return a, 0, errors.New("unclosed quote in attribute selector")
		}
		a.val = body[i+1 : i+1+j]
		i += j + 2
	} else {
		v, n := ident(body[i:])
		if n == 0 {
			return a, 0, fmt.Errorf("attribute selector %q needs a value", s)
		}
		a.val = v
		i += n
	}
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i >= len(body) || body[i] != ']' {
		return a, 0, fmt.Errorf("attribute selector %q: expected \"]\"", s)
	}
	a.valB = []byte(a.val)
	return a, i + 2, nil
}

// matches reports whether the element e satisfies the compound. It does not allocate
// (unless an attribute value holds character references).
func (c *compound) matches(e *Element) bool {
	if c.tag != "" && c.tag != e.name {
		return false
	}
	if c.id != "" {
		v, ok := e.attrValue("id")
		if !ok || string(v) != c.id {
			return false
		}
	}
	if len(c.class) > 0 {
		v, ok := e.attrValue("class")
		if !ok {
			return false
		}
		for _, cl := range c.class {
			if !hasWord(v, cl) {
				return false
			}
		}
	}
	for i := range c.attrs {
		a := &c.attrs[i]
		v, ok := e.attrValue(a.name)
		if !ok {
			return false
		}
		switch a.op {
		case opEquals:
			ok = string(v) == a.val
		case opWord:
			ok = hasWord(v, a.val)
		case opPrefix:
			ok = a.val != "" && bytes.HasPrefix(v, a.valB)
		case opSuffix:
			ok = a.val != "" && bytes.HasSuffix(v, a.valB)
		case opContains:
			ok = a.val != "" && bytes.Contains(v, a.valB)
		case opDash:
			ok = string(v) == a.val || bytes.HasPrefix(v, a.valB) && len(v) > len(a.val) && v[len(a.val)] == '-'
		}
		if !ok {
			return false
		}
	}
	return true
}

func hasWord(list []byte, w string) bool {
	if w == "" {
		return false
	}
	for len(list) > 0 {
		i := 0
		for i < len(list) && isSpace(list[i]) {
			i++
		}
		list = list[i:]
		j := 0
		for j < len(list) && !isSpace(list[j]) {
			j++
		}
		if string(list[:j]) == w {
			return true
		}
		list = list[j:]
	}
	return false
}
