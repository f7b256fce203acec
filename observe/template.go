package observe

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CombinedTemplate is the NGINX/Apache "combined" log format as a template:
//
//	127.0.0.1 - alice [02/Dec/2026:14:57:01 +0000] "GET /x?y=1 HTTP/1.1" 200 512 "-" "curl/8.5"
const CombinedTemplate = `{client} - {user} [{time_local}] "{request}" {status} {bytes_sent} "{referer}" "{user_agent}"`

// tvar identifies a template variable: an access-log field or one of the template-only ones.
type tvar uint8

const (
	tField     tvar = iota // an access-log field (tmplPart.f)
	tClient                // the client address without port
	tURI                   // path?query
	tRequest               // "METHOD uri proto"
	tDurMS                 // duration in milliseconds, 3 decimals
	tTimeLocal             // [02/Jan/2006:15:04:05 -0700] without brackets
	tUser                  // the authenticated user
)

var templateOnly = map[string]tvar{
	"client": tClient, "uri": tURI, "request": tRequest, "duration_ms": tDurMS,
	"time_local": tTimeLocal, "user": tUser,
}

// TemplateFields returns every name a template may use in braces.
func TemplateFields() []string {
	names := AccessLogFields()
	for n := range templateOnly {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

type tmplPart struct {
	lit string // literal text before the variable
	v   tvar
	f   field
	end bool // no variable: the trailing literal
}

// parseTemplate splits s into literals and {variables}; "{{" and "}}" stand for braces.
func parseTemplate(s string) ([]tmplPart, error) {
	var parts []tmplPart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{', c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte(c)
			i++
		case c == '}':
			return nil, fmt.Errorf("access log template: unmatched } at offset %d (write }} for a brace)", i)
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return nil, fmt.Errorf("access log template: unclosed { at offset %d", i)
			}
			name := s[i+1 : i+j]
			p := tmplPart{lit: lit.String()}
			if v, ok := templateOnly[name]; ok {
				p.v = v
			} else if f, ok := lookupField(name); ok {
				p.f = f
			} else {
				return nil, fmt.Errorf("access log template: unknown field {%s} (want one of %s)", name, strings.Join(TemplateFields(), ", "))
			}
			parts = append(parts, p)
			lit.Reset()
			i += j
		case c == '\n' || c == '\r':
			return nil, fmt.Errorf("access log template: line breaks are not allowed")
		default:
			lit.WriteByte(c)
		}
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("access log template: no {field} in %q", s)
	}
	return append(parts, tmplPart{lit: lit.String(), end: true}), nil
}

// ValidateTemplate checks an access-log template: every {name} must be one of
// TemplateFields.
func ValidateTemplate(s string) error {
	_, err := parseTemplate(s)
	return err
}

// clfLayout is the time of the common log format.
const clfLayout = "02/Jan/2006:15:04:05 -0700"

// appendTemplate appends r formatted by the template parts, terminated by '\n'. Text values
// are escaped like NGINX does ("\xHH" for control bytes, bytes from 0x7f up, quotes and
// backslashes) and empty ones written "-".
func appendTemplate(b []byte, parts []tmplPart, r *Record) []byte {
	for i := range parts {
		p := &parts[i]
		b = append(b, p.lit...)
		if p.end {
			break
		}
		switch p.v {
		case tField:
			b = appendTemplateField(b, p.f, r)
		case tClient:
			if r.RemoteAddr.IsValid() {
				b = r.RemoteAddr.Addr().Unmap().AppendTo(b)
			} else {
				b = append(b, '-')
			}
		case tURI:
			b = appendURI(b, r)
		case tRequest:
			b = appendEscaped(b, r.Method)
			b = append(b, ' ')
			b = appendURI(b, r)
			b = append(b, ' ')
			b = appendEscaped(b, r.Proto)
		case tDurMS:
			b = strconv.AppendFloat(b, float64(r.Duration.Microseconds())/1000, 'f', 3, 64)
		case tTimeLocal:
			t := r.Time
			if t.IsZero() {
				t = time.Now()
			}
			b = t.AppendFormat(b, clfLayout)
		case tUser:
			b = appendDash(b, r.User)
		}
	}
	return append(b, '\n')
}

func appendURI(b []byte, r *Record) []byte {
	b = appendEscaped(b, r.Path)
	if r.Query != "" {
		b = append(b, '?')
		b = appendEscaped(b, r.Query)
	}
	return b
}

// appendTemplateField appends an access-log field's value in template form.
func appendTemplateField(b []byte, f field, r *Record) []byte {
	switch f {
	case fTime:
		t := r.Time
		if t.IsZero() {
			t = time.Now()
		}
		return t.UTC().AppendFormat(b, timeLayout)
	case fRemoteAddr:
		if !r.RemoteAddr.IsValid() {
			return append(b, '-')
		}
		if r.RemoteAddr.Port() == 0 {
			return r.RemoteAddr.Addr().Unmap().AppendTo(b)
		}
		return netip.AddrPortFrom(r.RemoteAddr.Addr().Unmap(), r.RemoteAddr.Port()).AppendTo(b)
	case fStatus, fBytesSent, fBytesReceived, fDuration, fUpstreamStatus, fUpstreamWait, fAttempts,
		fAIFirstByte, fAITokensIn, fAITokensOut, fAICost:
		return appendValue(b, f, r, true) // numbers: the same in every format
	case fError:
		if r.Error == nil {
			return append(b, '-')
		}
		return appendEscaped(b, r.Error.Error())
	}
	return appendDash(b, textField(f, r))
}

// textField returns the value of a string field.
func textField(f field, r *Record) string {
	switch f {
	case fMethod:
		return r.Method
	case fHost:
		return r.Host
	case fPath:
		return r.Path
	case fQuery:
		return r.Query
	case fProto:
		return r.Proto
	case fUpstreamAddr:
		return r.UpstreamAddr
	case fRoute:
		return r.Route
	case fUserAgent:
		return r.UserAgent
	case fReferer:
		return r.Referer
	case fRequestID:
		return r.RequestID
	case fJA4:
		return r.JA4
	case fAIKey, fAIProvider, fAIModel, fAICache:
		return aiText(f, r.AI)
	}
	return ""
}

func appendDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

const upperHex = "0123456789ABCDEF"

// appendEscaped appends s with control bytes, DEL, bytes from 0x80 up, '"' and '\\' written
// as \xHH, as NGINX's log_format escape=default does, so that a client cannot break a line or
// a quoted field, nor put invalid UTF-8 or look-alike characters in the log.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', upperHex[c>>4], upperHex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
