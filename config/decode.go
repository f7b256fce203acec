package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Pos is a position in a config file, 1-based.
type Pos struct {
	Line, Column int
}

// Error is one problem found in a config file: where it is and which field it concerns.
type Error struct {
	// File is the config file name as given to Load or Parse.
	File string
	// Pos is the line and column of the offending value (or of the enclosing block when a
	// required field is missing). Zero when unknown.
	Pos Pos
	// Path names the field, e.g. "routes[2].upstream". Empty for file-level errors.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error formats e as "file:line:column: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Pos.Line > 0 && e.Pos.Column > 0:
		fmt.Fprintf(&b, ":%d:%d", e.Pos.Line, e.Pos.Column)
	case e.Pos.Line > 0:
		fmt.Fprintf(&b, ":%d", e.Pos.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a config, in file order. Its Error method puts one
// problem per line.
type ErrorList []*Error

// Error joins the errors with newlines.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Pos, l[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// Duration is a time span written as a Go duration string: "250ms", "5s", "1m30s", "2h".
// A bare 0 is accepted too.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// SignedDuration is a Duration that may be negative, for limits where a negative value means
// none ("-1s", or a bare -1).
type SignedDuration time.Duration

// Std returns d as a time.Duration.
func (d SignedDuration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d SignedDuration) String() string { return time.Duration(d).String() }

// Size is a byte count written as an integer with an optional unit: B, KB, MB, GB (powers of
// 1000) or KiB, MiB, GiB (powers of 1024), e.g. "32KiB", "1MiB", "4096".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses a Size.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 512, 32KiB, 1MiB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n * mult), nil
}

// StringList is a list of strings that may be written as a single string or a sequence.
type StringList []string

var (
	durationType   = reflect.TypeFor[Duration]()
	signedDurType  = reflect.TypeFor[SignedDuration]()
	sizeType       = reflect.TypeFor[Size]()
	stringListType = reflect.TypeFor[StringList]()
)

// decoder fills Go values from YAML nodes by reflection, strictly: unknown and duplicate
// keys and type mismatches are errors. It records the position of every value it visits, so
// validation can point at the field it complains about.
type decoder struct {
	file string
	pos  map[string]Pos
	errs ErrorList
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Pos: Pos{n.Line, n.Column}, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a scalar"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		d.decode(n.Content[0], v, path)
		return
	}
	d.pos[path] = Pos{n.Line, n.Column}
	if isNull(n) {
		return
	}
	t := v.Type()
	switch t {
	case durationType:
		if !d.scalar(n, path, "a duration") {
			return
		}
		if n.Value == "0" {
			v.SetInt(0)
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.errorf(n, path, "invalid duration %q (use e.g. 250ms, 5s, 1m)", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	case signedDurType:
		if !d.scalar(n, path, "a duration") {
			return
		}
		var dur time.Duration
		var err error
		switch n.Value {
		case "0":
		case "-1":
			dur = -1
		default:
			dur, err = time.ParseDuration(n.Value)
		}
		if err != nil {
			d.errorf(n, path, "invalid duration %q (use e.g. 250ms, 5s, 1m; negative means no limit)", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	case sizeType:
		if !d.scalar(n, path, "a size") {
			return
		}
		sz, err := ParseSize(n.Value)
		if err != nil {
			d.errorf(n, path, "%v", err)
			return
		}
		v.SetInt(int64(sz))
		return
	case stringListType:
		if n.Kind == yaml.ScalarNode {
			v.Set(reflect.ValueOf(StringList{n.Value}))
			return
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		nv := reflect.New(t.Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.String:
		if d.scalar(n, path, "a string") {
			v.SetString(n.Value)
		}
	case reflect.Bool:
		if !d.scalar(n, path, "true or false") {
			return
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			d.errorf(n, path, "want true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Float64:
		if !d.scalar(n, path, "a number") {
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || n.Tag != "!!float" && n.Tag != "!!int" {
			d.errorf(n, path, "want a number, got %q", n.Value)
			return
		}
		v.SetFloat(f)
	case reflect.Int, reflect.Int64:
		if !d.scalar(n, path, "an integer") {
			return
		}
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || n.Tag != "!!int" {
			d.errorf(n, path, "want an integer, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kp := path + "." + k.Value
			if seen[strings.ToLower(k.Value)] {
				d.errorf(k, kp, "duplicate key %q", k.Value)
				continue
			}
			seen[strings.ToLower(k.Value)] = true
			ev := reflect.New(t.Elem()).Elem()
			d.decode(val, ev, kp)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	default:
		panic("config: unsupported field type " + t.String())
	}
}

func (d *decoder) scalar(n *yaml.Node, path, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "want %s, got %s", want, kindName(n))
		return false
	}
	return true
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", kindName(n))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var names []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := k.Value
		if path != "" {
			kp = path + "." + k.Value
		}
		if k.Value == "<<" {
			d.errorf(k, kp, "merge keys are not supported")
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := closest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, kp, "%s", msg)
			continue
		}
		if seen[k.Value] {
			d.errorf(k, kp, "duplicate field %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), kp)
	}
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if dist := editDistance(s, c); dist < bestD {
			best, bestD = c, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
