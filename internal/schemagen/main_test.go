package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/verge-edge/verge/config"
)

// TestSchemaUpToDate fails when config/verge.schema.json no longer matches the config types.
func TestSchemaUpToDate(t *testing.T) {
	b, err := Generate("../../config")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, config.JSONSchema) {
		t.Fatal("config/verge.schema.json is out of date: run go generate ./config")
	}
}

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(config.JSONSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("verge.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("verge.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlToJSON turns a YAML text into the value a JSON decoder gives for the same data.
func yamlToJSON(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestSchemaAcceptsExamples validates every example config against the schema with a real
// JSON Schema validator: what verge validate accepts, the schema must accept.
func TestSchemaAcceptsExamples(t *testing.T) {
	s := compile(t)
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/*.yaml")
	files = append(files, more...)
	if len(files) < 5 {
		t.Fatalf("found %d example configs", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlToJSON(t, src)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSchemaRejects checks that the mistakes the decoder refuses are flagged by the schema
// too, so an editor shows them before verge validate does.
func TestSchemaRejects(t *testing.T) {
	s := compile(t)
	base := "listeners: [{address: '127.0.0.1:8080'}]\nroutes: [{respond: {body: hi}}]\n"
	if err := s.Validate(yamlToJSON(t, []byte(base))); err != nil {
		t.Fatalf("base config refused: %v", err)
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown top-level field", base + "listner: []\n", "listner"},
		{"unknown nested field", "listeners: [{address: x, adress: y}]\n", "adress"},
		{"bool as string", "listeners: [{address: x, trust_forwarded: 'yes'}]\n", "trust_forwarded"},
		{"bad duration", "listeners: [{address: x, timeouts: {idle: 10 seconds}}]\n", "idle"},
		{"bad size", "listeners: [{address: x, limits: {max_body_size: 10 megs}}]\n", "max_body_size"},
		{"list for a string", "listeners: [{address: [a, b]}]\n", "address"},
		{"integer as text", "listeners: [{address: x, max_conns: many}]\n", "max_conns"},
	} {
		err := s.Validate(yamlToJSON(t, []byte(c.yaml)))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not name %q", c.name, err, c.want)
		}
	}
}

// TestSchemaDescriptions: fields carry their doc comments, named by the YAML key.
func TestSchemaDescriptions(t *testing.T) {
	var v struct {
		Properties map[string]struct {
			Description string `json:"description"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(config.JSONSchema, &v); err != nil {
		t.Fatal(err)
	}
	d := v.Properties["listeners"].Description
	if !strings.HasPrefix(d, "listeners ") {
		t.Fatalf("listeners: description %q", d)
	}
}
