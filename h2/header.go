package h2

import (
	"net/http"

	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// appendRequestHeader adds the fields of h that may travel on HTTP/2 to m, keyed by lower-case
// name as they go on the wire, so fields whose names differ only in case keep their relative
// order. Trailer is left out: x/net/http2 builds it from the declared trailer names.
func appendRequestHeader(m http.Header, h *message.Header) {
	conn := h.Has("Connection")
	fields := h.Fields()
	for i := range fields {
		f := &fields[i]
		if httpbridge.SkipField(h, f, conn) || message.EqualFold(f.Name, "trailer") ||
			message.EqualFold(f.Name, "content-length") {
			continue
		}
		k := httpbridge.LowerName(f.Name)
		m[k] = append(m[k], f.Value)
	}
}
