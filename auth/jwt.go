package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// Bounds of the JWT checker.
const (
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
	// maxTokenBytes bounds a token: longer ones are refused unparsed.
	maxTokenBytes = 16 << 10
)

// JWTConfig configures NewJWT. Durations must be positive (config applies the defaults).
type JWTConfig struct {
	// JWKSURL is where the key set is fetched.
	JWKSURL string
	// Issuer, when set, must equal iss; Audience, when set, must meet aud.
	Issuer   string
	Audience []string
	// Algorithms are the accepted signature algorithms (asymmetric only).
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// Cookie and Header name other places the token may come in.
	Cookie, Header string
	// ClaimsToHeaders maps claim names to upstream request fields.
	ClaimsToHeaders map[string]string
	// CacheMin and CacheMax clamp the key set's max-age.
	CacheMin, CacheMax time.Duration
	// RefetchInterval is the least time between fetches for an unknown kid.
	RefetchInterval time.Duration
	// FetchTimeout bounds one fetch.
	FetchTimeout time.Duration
	// Client fetches the key set. Nil means DefaultClient.
	Client *http.Client
	// Logger receives fetch failures. Nil means slog.Default().
	Logger *slog.Logger
}

// JWT checks bearer tokens (RFC 7519, RFC 6750) signed by a key of a JSON Web Key Set.
type JWT struct {
	cfg      JWTConfig
	algs     []jose.SignatureAlgorithm
	keys     *keySet
	claims   []claimHeader // sorted by claim name
	missing  *Denial       // no token
	invalid  *Denial       // a bad token
	noKeys   *Denial       // key set unavailable
	audience jwt.Audience
}

type claimHeader struct{ claim, header, key string } // key: header as proxy.FieldKey

// NewJWT builds a JWT checker. The key set is fetched on the first request.
func NewJWT(c JWTConfig) *JWT {
	if c.Client == nil {
		c.Client = DefaultClient
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	j := &JWT{cfg: c, audience: jwt.Audience(c.Audience)}
	for _, a := range c.Algorithms {
		j.algs = append(j.algs, jose.SignatureAlgorithm(a))
	}
	for cl, h := range c.ClaimsToHeaders {
		j.claims = append(j.claims, claimHeader{cl, h, proxy.FieldKey(h)})
	}
	slices.SortFunc(j.claims, func(a, b claimHeader) int { return strings.Compare(a.claim, b.claim) })
	j.keys = &keySet{cfg: &j.cfg}
	j.missing = plain(401, "401 Unauthorized: a bearer token is required\n", "WWW-Authenticate", `Bearer realm="verge"`)
	j.invalid = plain(401, "401 Unauthorized: the token is not valid\n", "WWW-Authenticate", `Bearer realm="verge", error="invalid_token"`)
	j.noKeys = plain(503, "503 Service Unavailable: the token signing keys cannot be fetched\n", "Retry-After", "5")
	return j
}

// Check implements Checker.
func (j *JWT) Check(ctx context.Context, req *message.Request, client netip.Addr) (string, *Denial) {
	h := &req.Header
	for _, c := range j.claims {
		proxy.DelSpellings(h, c.key) // the client's own, in any spelling: only verified claims go upstream
	}
	raw := j.token(req)
	if raw == "" {
		return "", j.missing
	}
	claims, err := j.Verify(ctx, raw)
	if errors.Is(err, errNoKeys) {
		return "", j.noKeys
	}
	if err != nil {
		return "", j.invalid
	}
	for _, c := range j.claims {
		if v, ok := claimString(claims[c.claim]); ok {
			h.Set(c.header, v)
		}
	}
	var sub string
	if json.Unmarshal(claims["sub"], &sub) != nil {
		sub = ""
	}
	return sub, nil
}

// token finds the raw token: the configured header, else Authorization: Bearer, else the
// configured cookie.
func (j *JWT) token(req *message.Request) string {
	h := &req.Header
	if j.cfg.Header != "" {
		return strings.TrimSpace(h.Get(j.cfg.Header))
	}
	if v := h.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	if j.cfg.Cookie != "" {
		var tok string
		h.Values("Cookie", func(v string) bool {
			for part := range strings.SplitSeq(v, ";") {
				name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
				if ok && name == j.cfg.Cookie {
					tok = val
					return false
				}
			}
			return true
		})
		return tok
	}
	return ""
}

var (
	errNoKeys     = errors.New("jwt: the key set is unavailable")
	errUnknownKey = errors.New("jwt: no key of the set verifies the token")
	errNoExpiry   = errors.New("jwt: the token has no exp claim")
)

// Verify checks raw's signature, algorithm, issuer, audience and times, and returns its
// claims, each in its JSON form.
func (j *JWT) Verify(ctx context.Context, raw string) (map[string]json.RawMessage, error) {
	if len(raw) > maxTokenBytes {
		return nil, fmt.Errorf("jwt: token of %d bytes", len(raw))
	}
	tok, err := jwt.ParseSigned(raw, j.algs) // refuses algorithms not listed, and "none"
	if err != nil {
		return nil, err
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("jwt: want one signature")
	}
	hdr := tok.Headers[0]
	keys, err := j.keys.lookup(ctx, hdr.KeyID)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]json.RawMessage
	verified := false
	for i := range keys {
		k := &keys[i]
		if !keyFits(k, hdr.Algorithm) {
			continue
		}
		if err := tok.Claims(k.Key, &std, &all); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, errUnknownKey
	}
	if std.Expiry == nil {
		return nil, errNoExpiry
	}
	exp := jwt.Expected{Issuer: j.cfg.Issuer, AnyAudience: j.audience, Time: time.Now()}
	if err := std.ValidateWithLeeway(exp, j.cfg.Leeway); err != nil {
		return nil, err
	}
	return all, nil
}

// keyFits reports whether k may verify a signature of alg: the key's type must be the
// algorithm's family, and a key that names its alg must name this one. A public key is
// never used as an HMAC secret (algorithm confusion).
func keyFits(k *jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	switch k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// claimString renders a claim for a header field: a string as it is, a number as the token
// wrote it (no float rounding: 1234567890123456789 stays that), a boolean as true or false,
// a list of those joined by ", ". Objects, nested lists, list elements containing "," (the
// header could not be split back) and values with control characters are skipped.
func claimString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return "", false
	}
	if list, ok := v.([]any); ok {
		parts := make([]string, 0, len(list))
		for _, e := range list {
			p, ok := scalarClaim(e)
			if !ok || strings.IndexByte(p, ',') >= 0 {
				return "", false
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, ", "), true
	}
	return scalarClaim(v)
}

// scalarClaim renders a string, number or boolean; false for anything else and for values
// with control characters (CR, LF, NUL, TAB and the rest of C0, DEL).
func scalarClaim(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	default:
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "", false
		}
	}
	return s, true
}

// keySet is a cached JSON Web Key Set.
type keySet struct {
	cfg *JWTConfig

	mu        sync.Mutex
	keys      []jose.JSONWebKey // public signature keys only
	expires   time.Time         // when keys must be fetched again
	lastFetch time.Time         // the last attempt, successful or not
	inflight  chan struct{}     // closed when the running fetch ends; nil when none
}

// lookup returns the keys that may verify a token with kid ("" means any): from the cache,
// else after a fetch. A fetch happens, at most once per RefetchInterval, when the set
// expired (in the background: the stale keys answer meanwhile) or when no key has the kid
// (waited for: the issuer rotated its keys).
func (ks *keySet) lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	for range 2 {
		ks.mu.Lock()
		now := time.Now()
		keys, found := ks.match(kid)
		have := len(ks.keys) > 0
		fresh := have && now.Before(ks.expires)
		mayFetch := now.Sub(ks.lastFetch) >= ks.cfg.RefetchInterval || ks.lastFetch.IsZero()
		switch {
		case found && fresh:
			ks.mu.Unlock()
			return keys, nil
		case found:
			// Expired: answer from the stale keys at once and refetch in the background, so
			// that an unreachable issuer does not make every request wait for FetchTimeout.
			if mayFetch && ks.inflight == nil {
				ks.inflight = make(chan struct{})
				ks.lastFetch = now
				go ks.fetch(ks.inflight)
			}
			ks.mu.Unlock()
			return keys, nil
		case !mayFetch && ks.inflight == nil:
			// Recently fetched and the kid is not there: do not ask again yet.
			ks.mu.Unlock()
			if !have {
				return nil, errNoKeys
			}
			return nil, errUnknownKey
		}
		wait := ks.inflight
		if wait == nil {
			wait = make(chan struct{})
			ks.inflight = wait
			ks.lastFetch = now
			go ks.fetch(wait)
		}
		ks.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.keys) == 0 {
		return nil, errNoKeys
	}
	keys, found := ks.match(kid)
	if !found {
		return nil, errUnknownKey
	}
	return keys, nil
}

func (ks *keySet) match(kid string) ([]jose.JSONWebKey, bool) {
	if kid == "" {
		return ks.keys, len(ks.keys) > 0
	}
	for i := range ks.keys {
		if ks.keys[i].KeyID == kid {
			return ks.keys[i : i+1], true
		}
	}
	return nil, false
}

// fetch gets the key set and closes done. It runs on its own goroutine so that a client
// going away does not cancel a fetch other requests wait for; FetchTimeout bounds it.
func (ks *keySet) fetch(done chan struct{}) {
	defer close(done)
	keys, ttl, err := ks.get()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.inflight = nil
	if err != nil {
		ks.cfg.Logger.Warn("jwt: fetching the key set failed; keeping the keys there were", "url", ks.cfg.JWKSURL, "keys", len(ks.keys), "err", err)
		return
	}
	ks.keys = keys
	ks.expires = time.Now().Add(ttl)
}

func (ks *keySet) get() ([]jose.JSONWebKey, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ks.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", ks.cfg.JWKSURL, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ks.cfg.Client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, 0, fmt.Errorf("key set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Valid() && !k.IsPublic() {
			pub := k.Public() // a private key published by mistake: keep its public half
			if !pub.Valid() {
				continue // symmetric: never a verification key here
			}
			k = pub
		}
		if k.Valid() && k.IsPublic() {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, 0, errors.New("key set has no public signature key")
	}
	return keys, clampMaxAge(resp.Header.Get("Cache-Control"), ks.cfg.CacheMin, ks.cfg.CacheMax), nil
}

// clampMaxAge returns Cache-Control's max-age clamped to [lo, hi], lo when there is none.
func clampMaxAge(cc string, lo, hi time.Duration) time.Duration {
	d := lo
	for part := range strings.SplitSeq(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.ToLower(part)), "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				d = time.Duration(min(n, int64(hi/time.Second)+1)) * time.Second
			}
		}
	}
	return min(max(d, lo), hi)
}
