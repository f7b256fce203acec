package observe

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestCombinedFormat(t *testing.T) {
	var out bytes.Buffer
	a, err := NewAccessLog(AccessLogConfig{Writer: &out, Format: "combined"})
	if err != nil {
		t.Fatal(err)
	}
	rec := sampleRecord()
	rec.User = "alice"
	a.Log(rec)
	rec = &Record{Time: rec.Time, Method: "GET", Path: "/", Proto: "HTTP/2.0", Status: 404}
	a.Log(rec)
	a.Close()
	want := `192.0.2.7 - alice [04/Mar/2025:05:06:07 +0100] "GET /a\x22b\x5Cc\x0Ad\x01e\x7F\xFF\xFEf/\xE2\x80\xA8\xC3\xA9?q=1&r=2 HTTP/1.1" 502 1234 "https://ref.example/" "curl/8.0\x09(x)"` + "\n" +
		`- - - [04/Mar/2025:05:06:07 +0100] "GET / HTTP/2.0" 404 0 "-" "-"` + "\n"
	if got := out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTemplateFormat(t *testing.T) {
	var out bytes.Buffer
	a, err := NewAccessLog(AccessLogConfig{Writer: &out, Format: "template",
		Template: `{client} {method} {uri} {status} {duration_ms} {request_id} {route} {{literal}} {upstream_wait} {error}`})
	if err != nil {
		t.Fatal(err)
	}
	rec := sampleRecord()
	rec.Path = "/x"
	a.Log(rec)
	a.Close()
	want := `192.0.2.7 GET /x?q=1&r=2 502 1.500 abc-123 api {literal} 2.000250 connect refused: \x2210.0.0.1:80\x22` + "\n"
	if got := out.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{"{client} {bogus}", "unknown field {bogus}"},
		{"{client", "unclosed {"},
		{"client} x", "unmatched }"},
		{"no fields", "no {field}"},
		{"{client}\n{status}", "line breaks"},
	} {
		if err := ValidateTemplate(tc.tmpl); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateTemplate(%q) = %v, want %q", tc.tmpl, err, tc.want)
		}
	}
}

func BenchmarkAccessLogCombined(b *testing.B) {
	a, err := NewAccessLog(AccessLogConfig{Writer: io.Discard, Format: "combined"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rec := sampleRecord()
	rec.Error = nil
	rec.Path = "/api/v1/items/42"
	b.ReportAllocs()
	for b.Loop() {
		a.Log(rec)
	}
}

func BenchmarkAccessLogTemplate(b *testing.B) {
	a, err := NewAccessLog(AccessLogConfig{Writer: io.Discard, Format: "template",
		Template: "{client} {method} {uri} {status} {duration_ms} {request_id}"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rec := sampleRecord()
	rec.Error = nil
	rec.Path = "/api/v1/items/42"
	b.ReportAllocs()
	for b.Loop() {
		a.Log(rec)
	}
}

// FuzzTemplate: any template either fails to parse or encodes a record as one line.
func FuzzTemplate(f *testing.F) {
	f.Add(CombinedTemplate)
	f.Add("{client} {{x}} {uri}")
	f.Add("{")
	f.Fuzz(func(t *testing.T, tmpl string) {
		parts, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		line := appendTemplate(nil, parts, sampleRecord())
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("template %q made %q: not one line", tmpl, line)
		}
	})
}
