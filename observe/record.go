package observe

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/verge-edge/verge/proxy"
)

// Record is one access-log entry: what happened to one request. The logging phase fills it
// (FromSession does most of it) and passes it to AccessLog.Log, which encodes it before
// returning, so a Record may be reused at once. Zero fields are logged as "" or 0.
type Record struct {
	// Time is when the request head arrived; zero means the time Log is called.
	Time time.Time
	// RemoteAddr is the client's address and port (proxy.Session.ClientAddr: behind trusted
	// proxies the forwarded address, whose port 0 is not logged); IPv4-mapped IPv6
	// addresses are logged as IPv4.
	RemoteAddr netip.AddrPort
	// Method is the request method.
	Method string
	// Host is the Host header (HTTP/1.x) or :authority (HTTP/2, HTTP/3) as the client sent it.
	Host string
	// Path is the request target up to '?'; Query is what follows it, without the '?'.
	Path  string
	Query string
	// Proto is the downstream protocol, e.g. "HTTP/1.1".
	Proto string
	// Status is the status sent downstream, 0 when none was sent.
	Status int
	// BytesSent counts response body bytes sent downstream; BytesReceived request body bytes
	// read from the client.
	BytesSent     int64
	BytesReceived int64
	// Duration is the time from the request head to the end of the response.
	Duration time.Duration
	// UpstreamAddr is the address of the backend of the last attempt, "" if none was made.
	UpstreamAddr string
	// UpstreamStatus is the status the backend answered, 0 if none.
	UpstreamStatus int
	// UpstreamWait is the time from starting the last upstream attempt to its response head.
	UpstreamWait time.Duration
	// Route is the name of the matched route.
	Route string
	// Attempts counts upstream attempts (1 + retries), 0 when the request was answered
	// without an upstream.
	Attempts int
	// Error is the error that ended or disturbed the request, nil for none.
	Error error
	// UserAgent, Referer and RequestID are the User-Agent, Referer and X-Request-Id request
	// header fields.
	UserAgent string
	Referer   string
	RequestID string
	// User is the authenticated user (basic auth's user name, a JWT's sub), "" for none. It
	// is written by the combined and template formats ({user}).
	User string
	// JA4 is the JA4 fingerprint of the client's TLS hello, "" on plain text.
	JA4 string
	// AI holds the numbers of an ai_gateway request, nil for other requests.
	AI *AIRecord
}

// FromSession fills every field of r that s knows: all but Route and Error, which the caller
// sets. It is meant for the Logging phase, while the session is still valid; the strings it
// stores point into the session's request and must not be kept after Log returns.
func (r *Record) FromSession(s *proxy.Session) {
	req := s.Req
	*r = Record{
		Time:           s.Start,
		Status:         s.Status,
		BytesSent:      s.BytesSent,
		BytesReceived:  s.BytesReceived,
		UpstreamStatus: s.UpstreamStatus,
		UpstreamWait:   s.UpstreamWait,
		Attempts:       s.Attempts,
	}
	if !s.Start.IsZero() {
		r.Duration = time.Since(s.Start)
	}
	if ex := s.Exchange(); ex != nil {
		r.RemoteAddr = s.ClientAddr()
		r.JA4 = ex.Conn().JA4
	}
	if s.Peer != nil {
		r.UpstreamAddr = s.Peer.Address
	}
	if req != nil {
		r.Method, r.Host, r.Proto = req.Method, req.Authority, req.Proto
		r.Path, r.Query = req.Path(), req.RawQuery()
		r.UserAgent = req.Header.Get("User-Agent")
		r.Referer = req.Header.Get("Referer")
		r.RequestID = req.Header.Get("X-Request-Id")
	}
}

// field identifies one access-log field.
type field uint8

const (
	fTime field = iota
	fRemoteAddr
	fMethod
	fHost
	fPath
	fQuery
	fProto
	fStatus
	fBytesSent
	fBytesReceived
	fDuration
	fUpstreamAddr
	fUpstreamStatus
	fUpstreamWait
	fRoute
	fAttempts
	fError
	fUserAgent
	fReferer
	fRequestID
	fJA4
	// The ai_* fields (aimetrics.go) come last: the default field set writes them only on
	// records of ai_gateway requests.
	fAIKey
	fAIProvider
	fAIModel
	fAICache
	fAIFirstByte
	fAITokensIn
	fAITokensOut
	fAICost
	numFields
)

// numBaseFields is the number of fields every record of the default field set has.
const numBaseFields = int(fAIKey)

// fieldNames are the names used in AccessLogConfig.Fields and as JSON keys.
var fieldNames = [numFields]string{
	fTime: "time", fRemoteAddr: "remote_addr", fMethod: "method", fHost: "host", fPath: "path",
	fQuery: "query", fProto: "proto", fStatus: "status", fBytesSent: "bytes_sent",
	fBytesReceived: "bytes_received", fDuration: "duration", fUpstreamAddr: "upstream_addr",
	fUpstreamStatus: "upstream_status", fUpstreamWait: "upstream_wait", fRoute: "route",
	fAttempts: "attempts", fError: "error", fUserAgent: "user_agent", fReferer: "referer",
	fRequestID: "request_id", fJA4: "tls_ja4",
	fAIKey: "ai_key", fAIProvider: "ai_provider", fAIModel: "ai_model", fAICache: "ai_cache",
	fAIFirstByte: "ai_first_byte", fAITokensIn: "ai_tokens_in", fAITokensOut: "ai_tokens_out", fAICost: "ai_cost",
}

// AccessLogFields returns the name of every access-log field, in the default order. An
// AccessLogConfig with no Fields logs all of them.
func AccessLogFields() []string {
	return append([]string(nil), fieldNames[:]...)
}

// ValidateFields checks a list of access-log field names: each must be one of
// AccessLogFields and appear once. An empty list is valid (it means every field).
func ValidateFields(names []string) error {
	_, err := parseFields(names)
	return err
}

func parseFields(names []string) ([]field, error) {
	if len(names) == 0 {
		fs := make([]field, numFields)
		for i := range fs {
			fs[i] = field(i)
		}
		return fs, nil
	}
	var seen [numFields]bool
	fs := make([]field, 0, len(names))
	for _, n := range names {
		f, ok := lookupField(n)
		if !ok {
			return nil, fmt.Errorf("access log: unknown field %q (known: %v)", n, fieldNames)
		}
		if seen[f] {
			return nil, fmt.Errorf("access log: field %q listed twice", n)
		}
		seen[f] = true
		fs = append(fs, f)
	}
	return fs, nil
}

func lookupField(name string) (field, bool) {
	for i, n := range fieldNames {
		if n == name {
			return field(i), true
		}
	}
	return 0, false
}

// timeLayout is RFC 3339 with milliseconds, always in UTC.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendValue appends the value of field f of r, JSON-encoded when json is true and as a
// logfmt value otherwise.
func appendValue(b []byte, f field, r *Record, json bool) []byte {
	str := appendTextValue
	if json {
		str = appendJSONString
	}
	switch f {
	case fTime:
		t := r.Time
		if t.IsZero() {
			t = time.Now()
		}
		if json {
			b = append(b, '"')
		}
		b = t.UTC().AppendFormat(b, timeLayout)
		if json {
			b = append(b, '"')
		}
		return b
	case fRemoteAddr:
		if json {
			b = append(b, '"')
		}
		if ap := r.RemoteAddr; ap.IsValid() && ap.Port() == 0 {
			b = ap.Addr().Unmap().AppendTo(b)
		} else if ap.IsValid() {
			b = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(b)
		} else if !json {
			b = append(b, `""`...)
		}
		if json {
			b = append(b, '"')
		}
		return b
	case fMethod:
		return str(b, r.Method)
	case fHost:
		return str(b, r.Host)
	case fPath:
		return str(b, r.Path)
	case fQuery:
		return str(b, r.Query)
	case fProto:
		return str(b, r.Proto)
	case fStatus:
		return strconv.AppendInt(b, int64(r.Status), 10)
	case fBytesSent:
		return strconv.AppendInt(b, r.BytesSent, 10)
	case fBytesReceived:
		return strconv.AppendInt(b, r.BytesReceived, 10)
	case fDuration:
		return appendSeconds(b, int64(r.Duration))
	case fUpstreamAddr:
		return str(b, r.UpstreamAddr)
	case fUpstreamStatus:
		return strconv.AppendInt(b, int64(r.UpstreamStatus), 10)
	case fUpstreamWait:
		return appendSeconds(b, int64(r.UpstreamWait))
	case fRoute:
		return str(b, r.Route)
	case fAttempts:
		return strconv.AppendInt(b, int64(r.Attempts), 10)
	case fError:
		if r.Error == nil {
			return str(b, "")
		}
		return str(b, r.Error.Error())
	case fUserAgent:
		return str(b, r.UserAgent)
	case fReferer:
		return str(b, r.Referer)
	case fRequestID:
		return str(b, r.RequestID)
	case fJA4:
		return str(b, r.JA4)
	}
	if f >= fAIKey {
		return appendAIValue(b, f, r.AI, json)
	}
	return b
}

// appendRecord appends r as one line, terminated by '\n', with the given fields.
func appendRecord(b []byte, fs []field, r *Record, json bool) []byte {
	if json {
		b = append(b, '{')
	}
	for i, f := range fs {
		if i > 0 {
			if json {
				b = append(b, ',')
			} else {
				b = append(b, ' ')
			}
		}
		if json {
			b = append(b, '"')
			b = append(b, fieldNames[f]...)
			b = append(b, '"', ':')
		} else {
			b = append(b, fieldNames[f]...)
			b = append(b, '=')
		}
		b = appendValue(b, f, r, json)
	}
	if json {
		b = append(b, '}')
	}
	return append(b, '\n')
}
