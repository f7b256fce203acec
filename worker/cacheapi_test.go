package worker

import "testing"

// TestCacheNamespaceUnambiguous: names holding the separator cannot make two workers' (or
// two caches') namespaces equal.
func TestCacheNamespaceUnambiguous(t *testing.T) {
	pairs := [][2]string{{"a", "b:c"}, {"a:b", "c"}, {"a:1:b", "c"}, {"a", "1:b:c"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		ns := cacheNamespace(p[0], p[1])
		if q, dup := seen[ns]; dup {
			t.Fatalf("%v and %v share namespace %q", p, q, ns)
		}
		seen[ns] = p
	}
}
