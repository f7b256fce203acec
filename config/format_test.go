package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormatLayout(t *testing.T) {
	src := `# head comment

listeners:
    -   name: public     # the public one
        address: "127.0.0.1:8080"
    -   {name: origin, address: "127.0.0.1:8081"}


routes:
 - name: home
   respond: {body: hi}

 # before the second route
 - name: api
   upstream: app
upstreams:
 - name: app
   servers:
   - address: "127.0.0.1:9000"
`
	want := `# head comment

listeners:
  - name: public # the public one
    address: "127.0.0.1:8080"
  - {name: origin, address: "127.0.0.1:8081"}

routes:
  - name: home
    respond: {body: hi}

  # before the second route
  - name: api
    upstream: app
upstreams:
  - name: app
    servers:
      - address: "127.0.0.1:9000"
`
	got, err := Format([]byte(src), "v.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	again, err := Format(got, "v.yaml")
	if err != nil || string(again) != string(got) {
		t.Fatalf("not idempotent (%v):\n%s", err, again)
	}
}

func TestFormatAlignsLineComments(t *testing.T) {
	src := "a: 1   # one\nbbbbb: 2 # two\n\nc: 3      # alone\n"
	got, err := Format([]byte(src), "v.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := "a: 1     # one\nbbbbb: 2 # two\n\nc: 3 # alone\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestFormatErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"listeners: [\n", "v.yaml:1: did not find expected"},
		{"", "v.yaml: empty file"},
		{"a: 1\n---\nb: 2\n", "v.yaml:2: a configuration is one YAML document"},
	} {
		_, err := Format([]byte(c.src), "v.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Format(%q) = %v, want an error with %q", c.src, err, c.want)
		}
	}
}

// TestFormatExamples formats every example config: the result keeps the data and comments
// (Format checks), formatting it again changes nothing, and it still validates.
func TestFormatExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	more, _ := filepath.Glob("../examples/*/*.yaml")
	files = append(files, more...)
	if len(files) < 5 {
		t.Fatalf("found %d example configs", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Format(src, f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		again, err := Format(out, f)
		if err != nil || string(again) != string(out) {
			t.Errorf("%s: formatting twice differs (%v)", f, err)
		}
		if err := sameYAML(src, out); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestSameYAMLNotices(t *testing.T) {
	if err := sameYAML([]byte("a: 1 # c\n"), []byte("a: 1\n")); err == nil {
		t.Error("a dropped comment was not noticed")
	}
	if err := sameYAML([]byte("a: 1\n"), []byte("a: 2\n")); err == nil {
		t.Error("a changed value was not noticed")
	}
}
