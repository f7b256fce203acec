package fingerprint

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestJA4Vector checks a published Chrome fingerprint: the hello below (ciphers,
// extensions and signature algorithms in the browser's order, GREASE added) must give
// t13d1516h2_8daaf6152771_d8a2da3f94cd, as the JA4 tools report for it.
func TestJA4Vector(t *testing.T) {
	h := Hello{
		Versions:     []uint16{0x3a3a, 0x0304, 0x0303},
		ServerName:   "tls.example.com",
		CipherSuites: []uint16{0x4a4a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		Extensions: []uint16{0xdada, 0x002d, 0x0033, 0x0010, 0xfe0d, 0x0017, 0x44cd, 0x0000, 0x000b, 0x000a, 0x002b, 0xff01, 0x0023, 0x0012,
			0x0005, 0x000d, 0x001b, 0x1a1a},
		SignatureSchemes: []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601},
		ALPN:             []string{"h2", "http/1.1"},
	}
	if got, want := JA4(&h), "t13d1516h2_8daaf6152771_d8a2da3f94cd"; got != want {
		t.Fatalf("JA4 = %s, want %s", got, want)
	}
	// No SNI, no ALPN, QUIC.
	h.ServerName, h.ALPN, h.QUIC = "", nil, true
	if got := JA4(&h); !strings.HasPrefix(got, "q13i151600_8daaf6152771_") {
		t.Fatalf("JA4 = %s", got)
	}
	// An ALPN value with a non-alphanumeric end uses its hex form.
	h.ALPN = []string{"h3-\x01"}
	if got := JA4(&h); got[8:10] != "61" {
		t.Fatalf("ALPN part of %s, want 61 (hex 68332d01)", got)
	}
	var empty Hello
	if got := JA4(&empty); got != "t00i000000_000000000000_000000000000" {
		t.Fatalf("empty hello: %s", got)
	}
}

// TestJA4FromGoClient fingerprints real handshakes of Go's TLS client through
// FromClientHello: the fingerprint is stable across connections and names TLS 1.3, SNI
// and h2.
func TestJA4FromGoClient(t *testing.T) {
	got := make(chan string, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello := FromClientHello(h)
		got <- JA4(&hello)
		return nil, nil
	}}
	srv.StartTLS()
	defer srv.Close()
	var fps []string
	for range 2 {
		d := tls.Dialer{Config: &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}}
		c, err := d.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		fps = append(fps, <-got)
	}
	if fps[0] != fps[1] || !strings.HasPrefix(fps[0], "t13d") || fps[0][8:10] != "h2" {
		t.Fatalf("fingerprints %v", fps)
	}
}

func BenchmarkJA4(b *testing.B) {
	h := Hello{Versions: []uint16{0x0304}, ServerName: "x", CipherSuites: []uint16{0x1301, 0x1302, 0x1303, 0xc02b},
		Extensions: []uint16{0, 10, 11, 13, 16, 23, 43, 45, 51}, SignatureSchemes: []uint16{0x0403, 0x0804}, ALPN: []string{"h2"}}
	b.ReportAllocs()
	for b.Loop() {
		JA4(&h)
	}
}
