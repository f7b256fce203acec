package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// Purger is implemented by Controllers whose server has an HTTP cache. Without it the purge
// endpoint answers 501.
type Purger interface {
	// PurgeURL deletes the cached objects of an absolute URL (every variant; the scheme is
	// not compared).
	PurgeURL(url string) (PurgeCount, error)
	// PurgePrefix deletes the cached objects whose URL starts with prefix, an absolute URL.
	PurgePrefix(prefix string) (PurgeCount, error)
	// PurgeTag deletes the cached objects tagged by Cache-Tag or Surrogate-Key.
	PurgeTag(tag string) PurgeCount
	// PurgeAll deletes every cached object.
	PurgeAll() PurgeCount
}

// PurgeCount counts deleted objects: in all, and per cache tier (an object held in memory
// and on disk counts once in Objects and once in each tier).
type PurgeCount struct {
	Objects int `json:"purged"`
	Memory  int `json:"memory"`
	Disk    int `json:"disk"`
}

func (c *PurgeCount) add(d PurgeCount) {
	c.Objects += d.Objects
	c.Memory += d.Memory
	c.Disk += d.Disk
}

// PurgeRequest is the body of POST /cache/purge: any mix of URLs, prefixes and tags, or all,
// at least one.
type PurgeRequest struct {
	// URLs are absolute URLs, e.g. "https://example.com/a.css?v=2".
	URLs []string `json:"urls"`
	// Prefixes are absolute URL prefixes, e.g. "https://example.com/images/".
	Prefixes []string `json:"prefixes"`
	// Tags are Cache-Tag / Surrogate-Key values.
	Tags []string `json:"tags"`
	// All deletes every cached object.
	All bool `json:"all"`
}

// PurgeResult is the answer of POST /cache/purge: {"purged":N,"memory":M,"disk":D}.
type PurgeResult = PurgeCount

// maxPurgeBody bounds a purge request body.
const maxPurgeBody = 1 << 20

// purge deletes cached objects by URL, prefix or tag, or all of them. The request is checked
// whole before anything is deleted: a relative URL or prefix ("/c/1") is a 400.
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
	if len(req.URLs)+len(req.Prefixes)+len(req.Tags) == 0 && !req.All {
		writeError(w, http.StatusBadRequest, "nothing to purge: give urls, prefixes, tags or all")
		return
	}
	for _, list := range [2][]string{req.URLs, req.Prefixes} {
		for _, u := range list {
			if !absoluteHTTPURL(u) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("purge URL %q is not absolute: give scheme and host, e.g. https://example.com/path", u))
				return
			}
		}
	}
	var n PurgeCount
	if req.All {
		n = p.PurgeAll()
	}
	for _, u := range req.URLs {
		c, err := p.PurgeURL(u)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		n.add(c)
	}
	for _, pre := range req.Prefixes {
		c, err := p.PurgePrefix(pre)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		n.add(c)
	}
	for _, t := range req.Tags {
		n.add(p.PurgeTag(t))
	}
	s.logger().Info("admin: cache purged", "remote", r.RemoteAddr, "all", req.All, "urls", len(req.URLs),
		"prefixes", len(req.Prefixes), "tags", len(req.Tags), "objects", n.Objects, "memory", n.Memory, "disk", n.Disk)
	writeJSON(w, http.StatusOK, n)
}

// absoluteHTTPURL reports whether u is an http or https URL with a host.
func absoluteHTTPURL(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != ""
}
