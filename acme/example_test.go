package acme_test

import (
	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"

	"github.com/verge-edge/verge/acme"
	"github.com/verge-edge/verge/router"
)

// dnsProvider stands for a libdns provider of your DNS host (github.com/libdns/...): it adds
// and deletes the _acme-challenge TXT records.
type dnsProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// A Go program that embeds Verge solves every ACME challenge with DNS-01 (needed for
// wildcard names, and where ports 80 and 443 are not reachable) by giving the Manager a
// DNS-01 solver; listeners with tls.acme in the config then use it.
func Example_dns01() {
	var provider dnsProvider // e.g. &cloudflare.Provider{APIToken: ...}
	m := acme.New(acme.Options{
		Dir: "/var/lib/verge/acme",
		DNS01Solver: &certmagic.DNS01Solver{
			DNSManager: certmagic.DNSManager{DNSProvider: provider},
		},
	})
	defer m.Close()
	_ = router.Deps{ACME: m} // with Transport and the rest, for router.NewRuntime
}
