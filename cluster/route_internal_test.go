package cluster

import "testing"

func TestRouteToSelf(t *testing.T) {
	for _, tc := range []struct {
		route, listen string
		want          bool
	}{
		{"127.0.0.1:6222", "127.0.0.1:6222", true},
		{"127.0.0.1:6223", "127.0.0.1:6222", false},
		{"10.0.0.2:6222", "10.0.0.1:6222", false},
		{"127.0.0.1:6222", "0.0.0.0:6222", true}, // a wildcard listen: an address of this host
		{"127.0.0.1:6223", "0.0.0.0:6222", false},
		{"192.0.2.77:6222", "0.0.0.0:6222", false}, // TEST-NET: not an address of this host
		{"[::ffff:127.0.0.1]:6222", "127.0.0.1:6222", true},
		{"node-a:6222", "127.0.0.1:6222", false}, // names are not resolved: never self
	} {
		if got := routeToSelf(tc.route, tc.listen); got != tc.want {
			t.Errorf("routeToSelf(%q, %q) = %v, want %v", tc.route, tc.listen, got, tc.want)
		}
	}
}
