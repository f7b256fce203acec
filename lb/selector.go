package lb

// Selector picks a backend for a request. Implementations skip backends that are not
// Available and return nil when none is. backends is an immutable snapshot: the same slice
// (same backing array) is passed until the set changes, so a policy may cache derived data
// keyed by it. key is the request's hash key for hashing policies; others ignore it. Select
// is called concurrently and must not allocate in steady state.
type Selector interface {
	Select(backends []*Backend, key []byte) *Backend
}

// sameSet reports whether a and b are the same snapshot: same backing array and length.
func sameSet(a, b []*Backend) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// hash64 is FNV-1a over p followed by a 64-bit finalizer (from SplitMix64) that spreads
// the bits; it is deterministic across processes and does not allocate.
func hash64(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range p {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix64(h)
}

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
