package proxy

import "github.com/verge-edge/verge/message"

// StripUntrusted removes from h what an upstream request built for an untrusted peer loses:
// the hop-by-hop fields, the fields named by Connection and the forwarding fields
// (isForwardingField, "_" spellings included). The auth package uses it for the questions
// it sends to an authentication service.
func StripUntrusted(h *message.Header) { stripFields(h, false, true) }

// FieldKey returns name in the form DelSpellings takes: lower case, "_" written "-".
func FieldKey(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c == '_':
			b[i] = '-'
		}
	}
	return string(b)
}

// SameSpelling reports whether name is key (from FieldKey) ignoring ASCII case and taking
// "_" for "-".
func SameSpelling(name, key string) bool { return len(name) == len(key) && sameFieldName(name, key) }

// DelSpellings deletes every field whose name is key (from FieldKey) ignoring ASCII case and
// taking "_" for "-": X_User as well as X-User. CGI-style origins (PHP, WSGI, Rack) read both
// spellings as the same variable, so deleting one leaves a forged other.
func DelSpellings(h *message.Header, key string) {
	h.DeleteFunc(func(f *message.Field) bool { return SameSpelling(f.Name, key) })
}
