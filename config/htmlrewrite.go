package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/verge-edge/verge/htmlrewrite"
)

// HTMLRewriteRule changes the elements of a route's HTML responses that match Selector. The
// content fields are HTML inserted as written, or text escaped when Text is set.
type HTMLRewriteRule struct {
	// Selector chooses the elements: a CSS selector list of tag, *, #id, .class, [attr],
	// [attr=v] (also ~= ^= $= *= |=), joined by descendant (space) and child (>)
	// combinators. Required.
	Selector string `yaml:"selector"`
	// SetAttribute sets attributes (name: value), replacing existing values.
	SetAttribute map[string]string `yaml:"set_attribute"`
	// RemoveAttribute lists attributes to remove.
	RemoveAttribute StringList `yaml:"remove_attribute"`
	// Before is inserted before the element.
	Before string `yaml:"before"`
	// After is inserted after the element.
	After string `yaml:"after"`
	// Prepend is inserted at the start of the element's content.
	Prepend string `yaml:"prepend"`
	// Append is inserted at the end of the element's content, e.g. a script at the end of
	// head or body.
	Append string `yaml:"append"`
	// SetInnerContent, when set, replaces the element's content.
	SetInnerContent *string `yaml:"set_inner_content"`
	// Remove removes the element and its content.
	Remove bool `yaml:"remove"`
	// Text escapes the content fields (&, <, >, quotes) instead of inserting them as HTML.
	Text bool `yaml:"text"`
}

// Rules compiles the route's rules; it returns nil for none. The rules were validated.
func HTMLRewriteRules(list []HTMLRewriteRule) (*htmlrewrite.Rules, error) {
	if len(list) == 0 {
		return nil, nil
	}
	r := htmlrewrite.NewRules()
	for i := range list {
		rule := list[i]
		ct := htmlrewrite.HTML
		if rule.Text {
			ct = htmlrewrite.Text
		}
		names := make([]string, 0, len(rule.SetAttribute))
		for k := range rule.SetAttribute {
			names = append(names, k)
		}
		slices.Sort(names)
		// The values in the names' order: the handler runs for every matched element and
		// should not look them up in the map each time.
		values := make([]string, len(names))
		for k, n := range names {
			values[k] = rule.SetAttribute[n]
		}
		r.On(rule.Selector, func(e *htmlrewrite.Element) {
			for _, n := range rule.RemoveAttribute {
				e.RemoveAttr(n)
			}
			for k, n := range names {
				e.SetAttr(n, values[k])
			}
			if rule.Before != "" {
				e.Before(rule.Before, ct)
			}
			if rule.Prepend != "" {
				e.Prepend(rule.Prepend, ct)
			}
			if rule.SetInnerContent != nil {
				e.SetInnerContent(*rule.SetInnerContent, ct)
			}
			if rule.Append != "" {
				e.Append(rule.Append, ct)
			}
			if rule.After != "" {
				e.After(rule.After, ct)
			}
			if rule.Remove {
				e.Remove()
			}
		})
	}
	return r, r.Err()
}

// htmlRewrite validates the routes' html_rewrite rules.
func (v *validator) htmlRewrite() {
	for i := range v.c.Routes {
		rt := &v.c.Routes[i]
		if len(rt.HTMLRewrite) == 0 {
			continue
		}
		p := fmt.Sprintf("routes[%d].html_rewrite", i)
		if rt.Upstream == "" && (rt.Worker == "" || !rt.Cache.On()) {
			v.errf(p, "html_rewrite applies to the responses of an upstream or of a cached worker route (a worker rewrites its own responses with sdk.NewHTMLRewriter)")
		}
		total := 0
		for j := range rt.HTMLRewrite {
			r := &rt.HTMLRewrite[j]
			q := fmt.Sprintf("%s[%d]", p, j)
			if strings.TrimSpace(r.Selector) == "" {
				v.errf(q+".selector", "selector is required")
				continue
			}
			if err := htmlrewrite.NewRules().On(r.Selector, func(*htmlrewrite.Element) {}).Err(); err != nil {
				v.errf(q+".selector", "%v", err)
				continue
			}
			total += strings.Count(r.Selector, ",") + 1
			if len(r.SetAttribute) == 0 && len(r.RemoveAttribute) == 0 && r.Before == "" && r.After == "" &&
				r.Prepend == "" && r.Append == "" && r.SetInnerContent == nil && !r.Remove {
				v.errf(q, "no action (want set_attribute, remove_attribute, before, after, prepend, append, set_inner_content or remove)")
			}
			for n := range r.SetAttribute {
				if n == "" || strings.ContainsAny(n, " \t\n\r\f\"'/=<>") {
					v.errf(q+".set_attribute", "invalid attribute name %q", n)
				}
			}
		}
		if _, err := HTMLRewriteRules(rt.HTMLRewrite); err != nil && total > 0 {
			v.errf(p, "%v", err)
		}
	}
}
