package worker_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/worker"
)

// TestFetchRefusesLoopbackAndAdmin attacks as reported: a worker fetches the admin API on
// loopback (GET /config), by IP, by name and in IPv6 forms, the cloud metadata address, and
// through an allowed origin's redirect. Nothing reaches the admin listener; the allow list
// opens the origin but never the admin API.
func TestFetchRefusesLoopbackAndAdmin(t *testing.T) {
	admin := worker.NewProbe(t) // stands in for the admin API: it must see no connection
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://"+admin.AddrPort().String()+"/config", http.StatusFound)
			return
		}
		w.Write([]byte("from origin " + r.URL.Path))
	}))
	t.Cleanup(origin.Close)
	originPort := origin.Listener.Addr().(*net.TCPAddr).Port
	var ownOrigin atomic.Bool // whether the origin poses as one of Verge's own listeners
	e := newEnv(t, t.TempDir(), worker.Services{Listeners: func() []worker.Listener {
		ls := []worker.Listener{{Addr: admin.AddrPort(), Admin: true}}
		if ownOrigin.Load() {
			ls = append(ls, worker.Listener{Addr: origin.Listener.Addr().(*net.TCPAddr).AddrPort()})
		}
		return ls
	}})
	deploy := func(allow ...string) *worker.Worker {
		cfg := misbehaveConfig(t, worker.Limits{CPUTime: time.Second})
		cfg.Fetch.Allow = allow
		return e.deploy(t, cfg)
	}
	fetch := func(w *worker.Worker, u string) *recorder {
		t.Helper()
		rec, err := serve(t, w, "GET", "/fetch?u="+url.QueryEscape(u), "")
		if err != nil {
			t.Fatalf("fetch %s: %v", u, err)
		}
		return rec
	}
	refused := func(w *worker.Worker, u string) {
		t.Helper()
		if rec := fetch(w, u); rec.status != 502 || !strings.Contains(rec.body.String(), "refused") {
			t.Errorf("fetch %s: got %v, want 502 refused", u, rec)
		}
	}
	port := func(p int) string { return ":" + itoa(p) }
	adminPort := port(int(admin.AddrPort().Port()))

	w := deploy()
	for _, u := range []string{
		"http://127.0.0.1" + adminPort + "/config",
		"http://localhost" + adminPort + "/config",
		"http://[::ffff:127.0.0.1]" + adminPort + "/config",
		"http://[::ffff:7f00:1]" + adminPort + "/config",
		"http://0.0.0.0" + adminPort + "/config",
		"http://127.1" + adminPort + "/config",
		"http://2130706433" + adminPort + "/config",
		"http://0x7f.1" + adminPort + "/config",
		"http://[::1]" + adminPort + "/config",
		"http://[64:ff9b::127.0.0.1]" + adminPort + "/config",
		"https://127.0.0.1" + adminPort + "/config",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://10.0.0.1/",
		"http://192.168.0.1/",
		"http://100.64.0.1/",
		origin.URL + "/x",
	} {
		refused(w, u)
	}
	if n := admin.Settle(t); n != 0 {
		t.Fatalf("the admin listener saw %d connections from the worker", n)
	}

	// The allow list opens the loopback origin, not the admin API.
	w = deploy("127.0.0.0/8", "::1")
	if rec := fetch(w, origin.URL+"/x"); rec.status != 200 || rec.body.String() != "from origin /x" {
		t.Fatalf("allowed origin: got %v", rec)
	}
	refused(w, "http://127.0.0.1"+adminPort+"/config")
	refused(w, "http://localhost"+adminPort+"/config")
	// A redirect to the admin API comes back to the worker; it is not followed.
	if rec := fetch(w, origin.URL+"/redirect"); rec.status != http.StatusFound {
		t.Fatalf("redirect: got %v, want the 302 itself", rec)
	}
	w = deploy("127.0.0.1" + adminPort)
	refused(w, "http://127.0.0.1"+adminPort+"/config")
	w = deploy("localhost" + adminPort)
	refused(w, "http://localhost"+adminPort+"/config")
	if n := admin.Settle(t); n != 0 {
		t.Fatalf("the admin listener saw %d connections from the worker", n)
	}

	// One of Verge's own (non-admin) listeners is reachable only when named as ip:port.
	ownOrigin.Store(true)
	w = deploy("127.0.0.0/8")
	refused(w, origin.URL+"/x")
	w = deploy("127.0.0.1" + port(originPort))
	if rec := fetch(w, origin.URL+"/x"); rec.status != 200 {
		t.Fatalf("own listener allowed as ip:port: got %v", rec)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
