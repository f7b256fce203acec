package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// Basic cache and concurrency bounds.
const (
	// BasicCacheSize is how many verified (user, password) pairs a Basic keeps.
	BasicCacheSize = 1024
	// BasicCacheTTL is how long a verified pair is trusted without running bcrypt again.
	BasicCacheTTL = 5 * time.Minute
	// maxBasicHeader bounds the credentials decoded: longer ones are refused unread.
	maxBasicHeader = 1024
)

// bcryptSlots bounds the bcrypt comparisons running at once, process-wide, to half the CPUs
// (at least one): wrong passwords cost a full comparison each, and a flood of them must not
// take every core from the requests that need none.
var bcryptSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

// Basic checks HTTP Basic credentials (RFC 7617) against bcrypt hashes.
type Basic struct {
	users      map[string][]byte
	dummy      []byte // compared for unknown users, so they take as long as known ones
	userHeader string
	userKey    string // userHeader as proxy.FieldKey
	challenge  *Denial

	key   [32]byte // secret prefix of the cache keys, random per Basic
	mu    sync.Mutex
	cache map[[32]byte]basicEntry
}

type basicEntry struct {
	hash    string // the bcrypt hash the password matched: a changed hash misses
	expires time.Time
}

// BasicConfig configures NewBasic.
type BasicConfig struct {
	// Realm is the challenge's realm.
	Realm string
	// Users maps user names to bcrypt hashes.
	Users map[string]string
	// UserHeader, when set, carries the user name upstream.
	UserHeader string
}

var dummyHashes sync.Map // cost -> []byte

// dummyHash returns a bcrypt hash of a random password with the given cost, made once.
func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword([]byte(rand.Text()), bcrypt.DefaultCost)
	}
	actual, _ := dummyHashes.LoadOrStore(cost, h)
	return actual.([]byte)
}

// NewBasic builds a Basic checker. The hashes must be bcrypt hashes of one cost (config
// validates both): unknown users are compared against a dummy hash of the highest cost, so a
// user with a lower cost would answer a wrong password sooner than a name that does not exist.
func NewBasic(c BasicConfig) *Basic {
	b := &Basic{users: map[string][]byte{}, userHeader: c.UserHeader, userKey: proxy.FieldKey(c.UserHeader),
		cache: map[[32]byte]basicEntry{}}
	cost := bcrypt.DefaultCost
	for u, h := range c.Users {
		b.users[u] = []byte(h)
		if hc, err := bcrypt.Cost([]byte(h)); err == nil && hc > cost {
			cost = hc
		}
	}
	b.dummy = dummyHash(cost)
	rand.Read(b.key[:])
	b.challenge = plain(401, "401 Unauthorized: credentials are required\n",
		"WWW-Authenticate", `Basic realm="`+c.Realm+`", charset="UTF-8"`)
	return b
}

// Check implements Checker.
func (b *Basic) Check(ctx context.Context, req *message.Request, client netip.Addr) (string, *Denial) {
	if b.userHeader != "" {
		proxy.DelSpellings(&req.Header, b.userKey) // X_User too: CGI origins read it as X-User
	}
	var buf [maxBasicHeader]byte
	user, pass, ok := parseBasic(req.Header.Get("Authorization"), &buf)
	if !ok || !b.verify(ctx, user, pass) {
		return "", b.challenge
	}
	name := string(user) // the only allocation of a cached check: the user outlives buf
	if b.userHeader != "" {
		req.Header.Set(b.userHeader, name)
	}
	return name, nil
}

// verify reports whether pass is user's password, from the cache when it was verified
// lately, else by bcrypt. Unknown users are compared against a dummy hash of the same cost.
func (b *Basic) verify(ctx context.Context, user, pass []byte) bool {
	hash, known := b.users[string(user)]
	k := b.cacheKey(user, pass)
	now := time.Now()
	b.mu.Lock()
	e, hit := b.cache[k]
	b.mu.Unlock()
	if hit && known && e.hash == string(hash) && now.Before(e.expires) {
		return true
	}
	select {
	case bcryptSlots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	var err error
	if known {
		err = bcrypt.CompareHashAndPassword(hash, pass)
	} else {
		bcrypt.CompareHashAndPassword(b.dummy, pass)
	}
	<-bcryptSlots
	if !known || err != nil {
		return false
	}
	b.mu.Lock()
	if len(b.cache) >= BasicCacheSize {
		for old := range b.cache { // evict one: map order is random
			delete(b.cache, old)
			break
		}
	}
	b.cache[k] = basicEntry{hash: string(hash), expires: now.Add(BasicCacheTTL)}
	b.mu.Unlock()
	return true
}

// cacheKey is a SHA-256 of a random per-checker key followed by the credentials: the cache
// holds no password, and without the key nobody can choose credentials that collide with
// another user's entry (the key is never shown, so length extension does not apply).
func (b *Basic) cacheKey(user, pass []byte) [32]byte {
	var buf [len(b.key) + 1 + maxBasicHeader]byte
	n := copy(buf[:], b.key[:])
	n += copy(buf[n:], user)
	buf[n] = 0
	n++
	n += copy(buf[n:], pass)
	return sha256.Sum256(buf[:n])
}

// parseBasic decodes "Basic base64(user:pass)" into buf; user and pass point into it.
func parseBasic(v string, buf *[maxBasicHeader]byte) (user, pass []byte, ok bool) {
	if len(v) > maxBasicHeader || len(v) < 6 || !strings.EqualFold(v[:6], "basic ") {
		return nil, nil, false
	}
	enc := strings.TrimSpace(v[6:])
	if base64.StdEncoding.DecodedLen(len(enc)) > len(buf) {
		return nil, nil, false
	}
	var src [maxBasicHeader]byte // a copy on the stack: []byte(enc) would allocate
	n, err := base64.StdEncoding.Decode(buf[:], src[:copy(src[:], enc)])
	if err != nil {
		return nil, nil, false
	}
	raw := buf[:n]
	i := bytes.IndexByte(raw, ':')
	if i <= 0 {
		return nil, nil, false
	}
	return raw[:i], raw[i+1:], true
}
