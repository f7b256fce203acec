package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// KVBrowser is implemented by Controllers whose server has KV namespaces (bound by
// workers). Without it the /kv endpoints answer 501. Only the namespaces KVNamespaces lists
// can be read or changed; another name is an error wrapping ErrNotFound.
type KVBrowser interface {
	// KVNamespaces lists the namespaces the configuration binds, sorted.
	KVNamespaces() []string
	// KVList returns a page of keys of namespace ns.
	KVList(ctx context.Context, ns string, o KVListOptions) (KVPage, error)
	// KVGet returns a key's value, or an error wrapping ErrNotFound when it is absent.
	KVGet(ctx context.Context, ns, key string) (KVEntry, error)
	// KVPut stores a value.
	KVPut(ctx context.Context, ns, key string, value []byte, metadata json.RawMessage, ttl time.Duration) error
	// KVDelete removes a key; a missing key is not an error.
	KVDelete(ctx context.Context, ns, key string) error
}

// ErrInvalid is wrapped by KVBrowser errors about a bad key, value or option; the API
// answers 400.
var ErrInvalid = errors.New("invalid argument")

// KVListOptions select a page of keys.
type KVListOptions struct {
	Prefix string
	Cursor string
	Limit  int
}

// KVKey is one listed key.
type KVKey struct {
	Name       string          `json:"name"`
	Expiration *time.Time      `json:"expiration,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// KVPage is the answer of GET /kv/{namespace}.
type KVPage struct {
	Keys     []KVKey `json:"keys"`
	Complete bool    `json:"list_complete"`
	Cursor   string  `json:"cursor,omitempty"`
}

// KVEntry is the answer of GET /kv/{namespace}/value: Value when the value is UTF-8 text,
// else ValueBase64.
type KVEntry struct {
	Key         string          `json:"key"`
	Value       *string         `json:"value,omitempty"`
	ValueBase64 string          `json:"value_base64,omitempty"`
	Size        int             `json:"size"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	Expiration  *time.Time      `json:"expiration,omitempty"`
}

// NewKVEntry builds the answer for a stored value.
func NewKVEntry(key string, value, metadata []byte, exp time.Time) KVEntry {
	e := KVEntry{Key: key, Size: len(value)}
	if utf8.Valid(value) {
		v := string(value)
		e.Value = &v
	} else {
		e.ValueBase64 = base64.StdEncoding.EncodeToString(value)
	}
	if json.Valid(metadata) {
		e.Metadata = metadata
	}
	if !exp.IsZero() {
		e.Expiration = &exp
	}
	return e
}

// KVPutRequest is the body of PUT /kv/{namespace}/value?key=K: Value (text) or
// ValueBase64 (bytes), optional metadata (any JSON) and a time to live in seconds.
type KVPutRequest struct {
	Value       *string         `json:"value"`
	ValueBase64 *string         `json:"value_base64"`
	Metadata    json.RawMessage `json:"metadata"`
	TTLSeconds  int64           `json:"ttl_seconds"`
}

// maxKVListLimit bounds ?limit on GET /kv/{namespace}.
const maxKVListLimit = 1000

// maxKVTTLSeconds bounds ttl_seconds of PUT /kv/{namespace}/value: the longest
// time.Duration in whole seconds (about 292 years).
const maxKVTTLSeconds = int64(math.MaxInt64 / time.Second)

func (s *Server) kvBrowser(w http.ResponseWriter) (KVBrowser, bool) {
	b, ok := s.Controller.(KVBrowser)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server has no KV namespaces")
	}
	return b, ok
}

func kvStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

type kvNamespaces struct {
	Namespaces []string `json:"namespaces"`
}

func (s *Server) kvNamespaces(w http.ResponseWriter, _ *http.Request) {
	b, ok := s.kvBrowser(w)
	if !ok {
		return
	}
	list := b.KVNamespaces()
	if list == nil {
		list = []string{}
	}
	writeJSON(w, http.StatusOK, kvNamespaces{list})
}

func (s *Server) kvList(w http.ResponseWriter, r *http.Request) {
	b, ok := s.kvBrowser(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	o := KVListOptions{Prefix: q.Get("prefix"), Cursor: q.Get("cursor")}
	if o.Limit, ok = limitParam(w, r, 0, maxKVListLimit); !ok {
		return
	}
	page, err := b.KVList(r.Context(), r.PathValue("namespace"), o)
	if err != nil {
		writeError(w, kvStatus(err), err.Error())
		return
	}
	if page.Keys == nil {
		page.Keys = []KVKey{}
	}
	writeJSON(w, http.StatusOK, page)
}

// limitParam reads ?limit=, 1 to most; def when absent. It has answered when ok is false.
func limitParam(w http.ResponseWriter, r *http.Request, def, most int) (n int, ok bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d", most))
		return 0, false
	}
	return n, true
}

// kvValue reads the target of the /kv/{namespace}/value endpoints: the browser, and the
// key in ?key=, which holds any key (keys may contain '/'). It has answered when ok is false.
func (s *Server) kvValue(w http.ResponseWriter, r *http.Request) (b KVBrowser, key string, ok bool) {
	if b, ok = s.kvBrowser(w); !ok {
		return nil, "", false
	}
	if key = r.URL.Query().Get("key"); key == "" {
		writeError(w, http.StatusBadRequest, "missing ?key=")
		return nil, "", false
	}
	return b, key, true
}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request) {
	b, key, ok := s.kvValue(w, r)
	if !ok {
		return
	}
	e, err := b.KVGet(r.Context(), r.PathValue("namespace"), key)
	if err != nil {
		writeError(w, kvStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request) {
	b, key, ok := s.kvValue(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than the admin body limit")
		return
	}
	var req KVPutRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	var value []byte
	switch {
	case req.Value != nil && req.ValueBase64 != nil:
		writeError(w, http.StatusBadRequest, "send value or value_base64, not both")
		return
	case req.Value != nil:
		value = []byte(*req.Value)
	case req.ValueBase64 != nil:
		if value, err = base64.StdEncoding.DecodeString(*req.ValueBase64); err != nil {
			writeError(w, http.StatusBadRequest, "value_base64: "+err.Error())
			return
		}
	default:
		writeError(w, http.StatusBadRequest, "missing value (or value_base64)")
		return
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > maxKVTTLSeconds {
		// Past maxKVTTLSeconds the duration in nanoseconds would wrap around (to a
		// negative or a short time to live).
		writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl_seconds: want 0 to %d", maxKVTTLSeconds))
		return
	}
	meta := req.Metadata
	if string(meta) == "null" {
		meta = nil
	}
	ns := r.PathValue("namespace")
	if err := b.KVPut(r.Context(), ns, key, value, meta, time.Duration(req.TTLSeconds)*time.Second); err != nil {
		writeError(w, kvStatus(err), err.Error())
		return
	}
	s.logger().Info("admin: KV value stored", "remote", r.RemoteAddr, "namespace", ns, "key", key, "bytes", len(value))
	writeJSON(w, http.StatusOK, statusBody{"stored"})
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request) {
	b, key, ok := s.kvValue(w, r)
	if !ok {
		return
	}
	ns := r.PathValue("namespace")
	if err := b.KVDelete(r.Context(), ns, key); err != nil {
		writeError(w, kvStatus(err), err.Error())
		return
	}
	s.logger().Info("admin: KV key deleted", "remote", r.RemoteAddr, "namespace", ns, "key", key)
	writeJSON(w, http.StatusOK, statusBody{"deleted"})
}

// ConfigValidator is implemented by Controllers that can check a configuration without
// applying it. Without it POST /config/validate answers 501.
type ConfigValidator interface {
	// ValidateConfig returns what LoadConfig would refuse yaml for, or nil.
	ValidateConfig(yaml []byte) error
}

// validateBody answers POST /config/validate.
type validateBody struct {
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
}

func (s *Server) validateConfig(w http.ResponseWriter, r *http.Request) {
	v, ok := s.Controller.(ConfigValidator)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server cannot validate a configuration")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "configuration larger than the admin body limit")
		return
	}
	if err := v.ValidateConfig(body); err != nil {
		writeJSON(w, http.StatusOK, validateBody{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, validateBody{Valid: true})
}
