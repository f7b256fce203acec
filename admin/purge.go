package admin

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Purger is implemented by Controllers whose server has an HTTP cache. Without it the purge
// endpoint answers 501.
type Purger interface {
	// PurgeURL deletes the cached objects of an absolute URL (every variant; the scheme is
	// not compared) and returns how many there were.
	PurgeURL(url string) int
	// PurgePrefix deletes the cached objects whose URL starts with prefix.
	PurgePrefix(prefix string) int
	// PurgeTag deletes the cached objects tagged by Cache-Tag or Surrogate-Key.
	PurgeTag(tag string) int
}

// PurgeRequest is the body of POST /cache/purge: any mix of URLs, prefixes and tags, at
// least one.
type PurgeRequest struct {
	// URLs are absolute URLs, e.g. "https://example.com/a.css?v=2".
	URLs []string `json:"urls"`
	// Prefixes are absolute URL prefixes, e.g. "https://example.com/images/".
	Prefixes []string `json:"prefixes"`
	// Tags are Cache-Tag / Surrogate-Key values.
	Tags []string `json:"tags"`
}

// PurgeResult is the answer of POST /cache/purge.
type PurgeResult struct {
	// Purged counts the objects deleted.
	Purged int `json:"purged"`
}

// maxPurgeBody bounds a purge request body.
const maxPurgeBody = 1 << 20

// purge deletes cached objects by URL, prefix or tag.
func (s *Server) purge(w http.ResponseWriter, r *http.Request) {
	p, ok := s.Controller.(Purger)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server has no cache")
		return
	}
	var req PurgeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "purge request larger than 1MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid purge request: "+err.Error())
		return
	}
	if len(req.URLs)+len(req.Prefixes)+len(req.Tags) == 0 {
		writeError(w, http.StatusBadRequest, "nothing to purge: give urls, prefixes or tags")
		return
	}
	n := 0
	for _, u := range req.URLs {
		n += p.PurgeURL(u)
	}
	for _, pre := range req.Prefixes {
		n += p.PurgePrefix(pre)
	}
	for _, t := range req.Tags {
		n += p.PurgeTag(t)
	}
	s.logger().Info("admin: cache purged", "remote", r.RemoteAddr, "urls", len(req.URLs),
		"prefixes", len(req.Prefixes), "tags", len(req.Tags), "objects", n)
	writeJSON(w, http.StatusOK, PurgeResult{Purged: n})
}
