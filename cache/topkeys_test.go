package cache

import (
	"net/netip"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

func TestTopKeys(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := &origin{handler: fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100000"}, body: "0123456789"})}
	p := &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:40000")}}
	get := func(target string, times int) {
		for range times {
			ex.req.Reset()
			ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto, ex.req.Scheme = "GET", target, "example.test", message.HTTP11, "http"
			p.ServeExchange(ex)
		}
	}
	get("/a", 4) // a miss, then 3 hits
	get("/b", 2)
	get("/c", 7)
	get("/d", 1) // stored, never served from the cache: not listed
	top := c.TopKeys(2)
	if len(top) != 2 || top[0].URL != "http://example.test/c" || top[0].Hits != 6 || top[1].URL != "http://example.test/a" || top[1].Hits != 3 || top[0].Size != 10 {
		t.Fatalf("TopKeys(2) = %+v", top)
	}
	if all := c.TopKeys(1000); len(all) != 3 {
		t.Fatalf("TopKeys(1000) = %+v", all)
	}
	if c.TopKeys(0) != nil {
		t.Fatal("TopKeys(0) not nil")
	}
	c.PurgeAll()
	if top := c.TopKeys(10); len(top) != 0 {
		t.Fatalf("after a purge: %+v", top)
	}
}

// BenchmarkMemoryHitParallel measures hits on one object from every core: the hit counter
// of TopKeys is one atomic add on a line they share.
func BenchmarkMemoryHitParallel(b *testing.B) {
	c, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	o := &origin{handler: fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100000"}, body: string(make([]byte, 1024))})}
	p := &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c}
	run := func(ex *benchExchange) {
		ex.req.Reset()
		ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto, ex.req.Scheme = "GET", "/index.html", "example.test", message.HTTP11, "http"
		p.ServeExchange(ex)
	}
	run(&benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:40000")}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:40000")}}
		for pb.Next() {
			run(ex)
		}
	})
}
