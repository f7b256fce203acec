package durable

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ID identifies one object of a namespace: 16 bytes chosen from a name (deterministically)
// or at random, followed by 16 bytes of an HMAC over them keyed by the namespace, so that
// IDs of another namespace or made-up strings are rejected. Its String form is 64 lowercase
// hex digits, as Cloudflare's.
type ID [32]byte

// String returns the ID's hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// idKey derives the MAC key of a namespace from its identity; it is the same in every process
// (and on every node), so IDs made anywhere verify everywhere.
func idKey(namespace string) []byte {
	h := sha256.Sum256([]byte("verge durable object namespace\x00" + namespace))
	return h[:]
}

func seal(key []byte, head []byte) ID {
	var id ID
	copy(id[:16], head)
	m := hmac.New(sha256.New, key)
	m.Write(id[:16])
	copy(id[16:], m.Sum(nil))
	return id
}

// IDFromName returns the ID of name in namespace: the same for every call.
func IDFromName(namespace, name string) ID {
	h := sha256.Sum256([]byte(namespace + "\x00" + name))
	return seal(idKey(namespace), h[:16])
}

// NewUniqueID returns a random ID of namespace.
func NewUniqueID(namespace string) ID {
	var head [16]byte
	_, _ = rand.Read(head[:])
	return seal(idKey(namespace), head[:])
}

// ParseID parses the String form of an ID and checks that it belongs to namespace.
func ParseID(namespace, s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("durable: invalid object id %q: want 64 hex digits: %w", s, ErrInvalid)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("durable: invalid object id %q: %w", s, ErrInvalid)
	}
	if want := seal(idKey(namespace), id[:16]); !hmac.Equal(want[16:], id[16:]) {
		return id, fmt.Errorf("durable: object id %q does not belong to this namespace: %w", s, ErrInvalid)
	}
	return id, nil
}
