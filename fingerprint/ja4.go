// Package fingerprint computes JA4 fingerprints of TLS client hellos (FoxIO's JA4: protocol,
// version, SNI, counts of ciphers and extensions, ALPN, then truncated SHA-256 hashes of the
// sorted cipher suites and of the sorted extensions with the signature algorithms), so that
// rate limits, rules and logs can tell client software apart whatever address it uses.
package fingerprint

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"slices"
	"strconv"
)

// Hello is what JA4 reads of a client hello; FromClientHello fills it from crypto/tls.
type Hello struct {
	// QUIC marks a hello carried by QUIC ("q") rather than TLS over TCP ("t").
	QUIC bool
	// Versions are the supported versions (the supported_versions extension, or the
	// legacy version alone), wire values, GREASE included or not.
	Versions []uint16
	// ServerName is the SNI host name, empty when absent.
	ServerName string
	// CipherSuites, Extensions and SignatureSchemes are wire values in the client's order.
	CipherSuites     []uint16
	Extensions       []uint16
	SignatureSchemes []uint16
	// ALPN lists the offered application protocols in order.
	ALPN []string
}

// FromClientHello returns the Hello of a crypto/tls client hello.
func FromClientHello(h *tls.ClientHelloInfo) Hello {
	sig := make([]uint16, len(h.SignatureSchemes))
	for i, s := range h.SignatureSchemes {
		sig[i] = uint16(s)
	}
	return Hello{Versions: h.SupportedVersions, ServerName: h.ServerName, CipherSuites: h.CipherSuites,
		Extensions: h.Extensions, SignatureSchemes: sig, ALPN: h.SupportedProtos}
}

// isGREASE reports whether v is one of RFC 8701's reserved values (0x0a0a, 0x1a1a, ...).
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// JA4 returns the fingerprint of h, e.g. "t13d1516h2_8daaf6152771_d8a2da3f94cd".
func JA4(h *Hello) string {
	b := make([]byte, 0, 36)
	if h.QUIC {
		b = append(b, 'q')
	} else {
		b = append(b, 't')
	}
	var top uint16
	for _, v := range h.Versions {
		if !isGREASE(v) && v > top {
			top = v
		}
	}
	b = append(b, versionCode(top)...)
	if h.ServerName != "" {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}
	ciphers := nonGREASE(h.CipherSuites)
	exts := nonGREASE(h.Extensions)
	b = appendCount(b, len(ciphers))
	b = appendCount(b, len(exts))
	b = appendALPN(b, h.ALPN)
	b = append(b, '_')

	slices.Sort(ciphers)
	if len(ciphers) == 0 {
		b = append(b, "000000000000"...)
	} else {
		b = appendHash(b, appendHexList(nil, ciphers))
	}
	b = append(b, '_')

	// Extensions sorted, without SNI (0x0000) and ALPN (0x0010), then the signature
	// algorithms in the client's order.
	sorted := exts[:0]
	for _, e := range exts {
		if e != 0x0000 && e != 0x0010 {
			sorted = append(sorted, e)
		}
	}
	slices.Sort(sorted)
	if len(sorted) == 0 {
		b = append(b, "000000000000"...)
		return string(b)
	}
	text := appendHexList(nil, sorted)
	if sigs := nonGREASE(h.SignatureSchemes); len(sigs) > 0 {
		text = append(text, '_')
		text = appendHexList(text, sigs)
	}
	return string(appendHash(b, text))
}

func versionCode(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func nonGREASE(vs []uint16) []uint16 {
	out := make([]uint16, 0, len(vs))
	for _, v := range vs {
		if !isGREASE(v) {
			out = append(out, v)
		}
	}
	return out
}

// appendCount appends n as two digits, 99 at most.
func appendCount(b []byte, n int) []byte {
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

// appendALPN appends the first and last characters of the first ALPN value, or of its hex
// form when either is not an ASCII letter or digit; "00" without ALPN.
func appendALPN(b []byte, alpn []string) []byte {
	if len(alpn) == 0 || alpn[0] == "" {
		return append(b, "00"...)
	}
	v := alpn[0]
	first, last := v[0], v[len(v)-1]
	if !alnum(first) || !alnum(last) {
		x := hex.EncodeToString([]byte(v))
		return append(b, x[0], x[len(x)-1])
	}
	return append(b, first, last)
}

func alnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// appendHexList appends vs as comma-separated four-digit lowercase hex.
func appendHexList(b []byte, vs []uint16) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		s := strconv.FormatUint(uint64(v), 16)
		for range 4 - len(s) {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	return b
}

// appendHash appends the first 12 hex digits of text's SHA-256.
func appendHash(b, text []byte) []byte {
	sum := sha256.Sum256(text)
	var x [12]byte
	hex.Encode(x[:], sum[:6])
	return append(b, x[:]...)
}
