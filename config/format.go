package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Format returns src, a YAML configuration, in Verge's canonical layout: two-space
// indentation, list items indented under their key, comments kept, and the blank lines
// between entries kept (one at most in a row). It changes layout only: the result decodes to the same
// data and holds the same comments, which Format checks before it returns; when the YAML
// library cannot keep a comment in place, Format returns an error rather than a changed
// file. file names src in errors. Format does not validate the configuration (Parse does).
func Format(src []byte, file string) ([]byte, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) || len(bytes.TrimSpace(src)) == 0 {
			return nil, fmt.Errorf("%s: empty file", file)
		}
		if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", file, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a configuration is one YAML document; this file holds more", file, extra.Line)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	res, err := keepBlankLines(src, out.Bytes(), &doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	res = alignLineComments(res)
	if err := sameYAML(src, res); err != nil {
		return nil, fmt.Errorf("%s: not reformatted: %w", file, err)
	}
	return res, nil
}

// yamlLineErr is the form of the YAML library's syntax errors.
var yamlLineErr = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// keepBlankLines puts back the blank lines the YAML library drops: one before each key or
// list item (or before its head comment) that had one or more above it in src. out is the
// encoded form of doc, which was decoded from src; the two trees have the same shape.
func keepBlankLines(src, out []byte, doc *yaml.Node) ([]byte, error) {
	var od yaml.Node
	if err := yaml.Unmarshal(out, &od); err != nil {
		return nil, fmt.Errorf("the YAML library wrote a file it cannot read back: %w", err)
	}
	srcLines := bytes.Split(src, []byte("\n"))
	outLines := bytes.Split(out, []byte("\n"))
	blank := map[int]bool{} // 0-based out line indexes to put a blank line before
	var walk func(s, o *yaml.Node)
	mark := func(s, o *yaml.Node) {
		if s.Line > 0 && o.Line > 0 && blankAbove(srcLines, s.Line-1) {
			blank[firstOfEntry(outLines, o.Line-1)] = true
		}
	}
	walk = func(s, o *yaml.Node) {
		if s == nil || o == nil || s.Kind != o.Kind || len(s.Content) != len(o.Content) || s.Style&yaml.FlowStyle != 0 {
			return
		}
		switch s.Kind {
		case yaml.DocumentNode:
			for i := range s.Content {
				walk(s.Content[i], o.Content[i])
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(s.Content); i += 2 {
				mark(s.Content[i], o.Content[i])
				walk(s.Content[i+1], o.Content[i+1])
			}
		case yaml.SequenceNode:
			for i := range s.Content {
				mark(s.Content[i], o.Content[i])
				walk(s.Content[i], o.Content[i])
			}
		}
	}
	walk(doc, &od)
	var b bytes.Buffer
	for i, l := range outLines {
		if blank[i] && i > 0 && len(bytes.TrimSpace(outLines[i-1])) > 0 {
			b.WriteByte('\n')
		}
		b.Write(l)
		if i < len(outLines)-1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}

// blankAbove reports whether the line above line i (0-based), skipping comment lines, is
// blank.
func blankAbove(lines [][]byte, i int) bool {
	for i--; i >= 0; i-- {
		t := bytes.TrimSpace(lines[i])
		if len(t) == 0 {
			return true
		}
		if t[0] != '#' {
			return false
		}
	}
	return false
}

// firstOfEntry returns the index of the first line of the entry at line i: the first of the
// comment lines right above it, or i.
func firstOfEntry(lines [][]byte, i int) int {
	for i > 0 {
		t := bytes.TrimSpace(lines[i-1])
		if len(t) == 0 || t[0] != '#' {
			break
		}
		i--
	}
	return i
}

// alignLineComments lines up the comments at the ends of consecutive lines, one column
// past the longest of them, as gofmt does.
func alignLineComments(b []byte) []byte {
	var n yaml.Node
	if yaml.Unmarshal(b, &n) != nil {
		return b
	}
	lines := strings.Split(string(b), "\n")
	code := map[int]int{} // 0-based line -> length of the code before its comment
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if c := n.LineComment; c != "" && n.Line > 0 && n.Line <= len(lines) {
			l := lines[n.Line-1]
			if strings.HasSuffix(l, " "+c) && !strings.Contains(c, "\n") {
				code[n.Line-1] = len(strings.TrimRight(strings.TrimSuffix(l, c), " "))
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&n)
	for i := 0; i < len(lines); {
		if _, ok := code[i]; !ok {
			i++
			continue
		}
		j, width := i, 0
		for ; j < len(lines); j++ {
			w, ok := code[j]
			if !ok {
				break
			}
			width = max(width, w)
		}
		if j-i > 1 {
			for k := i; k < j; k++ {
				c := strings.TrimLeft(lines[k][code[k]:], " ")
				lines[k] = lines[k][:code[k]] + strings.Repeat(" ", width-code[k]+1) + c
			}
		}
		i = j
	}
	return []byte(strings.Join(lines, "\n"))
}

// sameYAML reports an error unless a and b decode to the same data and hold the same
// comments.
func sameYAML(a, b []byte) error {
	var va, vb any
	if err := yaml.Unmarshal(a, &va); err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, &vb); err != nil {
		return fmt.Errorf("the YAML library wrote a file it cannot read back: %w", err)
	}
	if !reflect.DeepEqual(va, vb) {
		return errors.New("the YAML library changed the data; file left unchanged")
	}
	ca, err := comments(a)
	if err != nil {
		return err
	}
	cb, err := comments(b)
	if err != nil {
		return err
	}
	if !slices.Equal(ca, cb) {
		return errors.New("the YAML library would drop or move a comment; file left unchanged")
	}
	return nil
}

// comments returns the comment lines of a YAML text in order, without their "#" and spaces.
func comments(src []byte) ([]string, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(src, &n); err != nil {
		return nil, err
	}
	var out []string
	var walk func(n *yaml.Node)
	add := func(c string) {
		for _, l := range strings.Split(c, "\n") {
			if l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#")); l != "" {
				out = append(out, l)
			}
		}
	}
	walk = func(n *yaml.Node) {
		add(n.HeadComment)
		add(n.LineComment)
		for _, c := range n.Content {
			walk(c)
		}
		add(n.FootComment)
	}
	walk(&n)
	return out, nil
}
