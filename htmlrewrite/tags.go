// tagInfo's table: the elements whose parsing differs (void, raw text, optional end tags)
// and common names, interned so that open elements cost no allocation.

package htmlrewrite

// tagInfo returns the interned lowercase name of a known tag and its flags and kind; "" for
// an unknown tag.
func tagInfo(b []byte) (string, tagFlags) {
	switch string(b) {
	case "a":
		return "a", 0
	case "abbr":
		return "abbr", 0
	case "address":
		return "address", fClosesP
	case "area":
		return "area", fVoid
	case "article":
		return "article", fClosesP
	case "aside":
		return "aside", fClosesP
	case "audio":
		return "audio", 0
	case "b":
		return "b", 0
	case "base":
		return "base", fVoid
	case "blockquote":
		return "blockquote", fClosesP
	case "body":
		return "body", 0
	case "br":
		return "br", fVoid
	case "button":
		return "button", 0
	case "canvas":
		return "canvas", 0
	case "caption":
		return "caption", 0
	case "code":
		return "code", 0
	case "col":
		return "col", fVoid
	case "colgroup":
		return "colgroup", 0
	case "dd":
		return "dd", tagFlags(kDtDd) << kindShift
	case "details":
		return "details", fClosesP
	case "dialog":
		return "dialog", fClosesP
	case "div":
		return "div", fClosesP
	case "dl":
		return "dl", fClosesP
	case "dt":
		return "dt", tagFlags(kDtDd) << kindShift
	case "em":
		return "em", 0
	case "embed":
		return "embed", fVoid
	case "fieldset":
		return "fieldset", fClosesP
	case "figcaption":
		return "figcaption", fClosesP
	case "figure":
		return "figure", fClosesP
	case "footer":
		return "footer", fClosesP
	case "form":
		return "form", fClosesP
	case "h1":
		return "h1", fClosesP
	case "h2":
		return "h2", fClosesP
	case "h3":
		return "h3", fClosesP
	case "h4":
		return "h4", fClosesP
	case "h5":
		return "h5", fClosesP
	case "h6":
		return "h6", fClosesP
	case "head":
		return "head", 0
	case "header":
		return "header", fClosesP
	case "hgroup":
		return "hgroup", fClosesP
	case "hr":
		return "hr", fVoid | fClosesP
	case "html":
		return "html", 0
	case "i":
		return "i", 0
	case "iframe":
		return "iframe", fRaw
	case "img":
		return "img", fVoid
	case "input":
		return "input", fVoid
	case "label":
		return "label", 0
	case "legend":
		return "legend", 0
	case "li":
		return "li", tagFlags(kLi) << kindShift
	case "link":
		return "link", fVoid
	case "main":
		return "main", fClosesP
	case "menu":
		return "menu", fClosesP
	case "meta":
		return "meta", fVoid
	case "nav":
		return "nav", fClosesP
	case "noscript":
		return "noscript", 0
	case "ol":
		return "ol", fClosesP
	case "optgroup":
		return "optgroup", tagFlags(kOptgroup) << kindShift
	case "option":
		return "option", tagFlags(kOption) << kindShift
	case "p":
		return "p", fClosesP | tagFlags(kP)<<kindShift
	case "param":
		return "param", fVoid
	case "picture":
		return "picture", 0
	case "pre":
		return "pre", fClosesP
	case "s":
		return "s", 0
	case "script":
		return "script", fRaw
	case "section":
		return "section", fClosesP
	case "select":
		return "select", 0
	case "small":
		return "small", 0
	case "source":
		return "source", fVoid
	case "span":
		return "span", 0
	case "strong":
		return "strong", 0
	case "style":
		return "style", fRaw
	case "sub":
		return "sub", 0
	case "summary":
		return "summary", 0
	case "sup":
		return "sup", 0
	case "svg":
		return "svg", 0
	case "path":
		return "path", 0
	case "g":
		return "g", 0
	case "table":
		return "table", fClosesP
	case "tbody":
		return "tbody", tagFlags(kSection) << kindShift
	case "td":
		return "td", tagFlags(kCell) << kindShift
	case "template":
		return "template", 0
	case "textarea":
		return "textarea", fRaw
	case "tfoot":
		return "tfoot", tagFlags(kSection) << kindShift
	case "th":
		return "th", tagFlags(kCell) << kindShift
	case "thead":
		return "thead", tagFlags(kSection) << kindShift
	case "time":
		return "time", 0
	case "title":
		return "title", fRaw
	case "tr":
		return "tr", tagFlags(kRow) << kindShift
	case "track":
		return "track", fVoid
	case "u":
		return "u", 0
	case "ul":
		return "ul", fClosesP
	case "video":
		return "video", 0
	case "wbr":
		return "wbr", fVoid
	case "xmp":
		return "xmp", fRaw
	case "noembed":
		return "noembed", fRaw
	case "noframes":
		return "noframes", fRaw
	case "plaintext":
		return "plaintext", fPlain
	case "keygen":
		return "keygen", fVoid
	case "frame":
		return "frame", fVoid
	case "basefont":
		return "basefont", fVoid
	case "bgsound":
		return "bgsound", fVoid
	case "q":
		return "q", 0
	case "cite":
		return "cite", 0
	case "mark":
		return "mark", 0
	case "nobr":
		return "nobr", 0
	case "center":
		return "center", 0
	case "font":
		return "font", 0
	case "big":
		return "big", 0
	case "tt":
		return "tt", 0
	}
	return "", 0
}
