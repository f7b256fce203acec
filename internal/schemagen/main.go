// Command schemagen writes the JSON Schema of Verge's config file (config/verge.schema.json,
// embedded in the binary and printed by `verge schema`). It walks the config package's types
// by reflection the way its decoder does (config/decode.go), so the schema accepts what the
// decoder accepts, and takes each field's description from its doc comment in the source.
//
//	go generate ./config
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/verge-edge/verge/config"
)

func main() {
	out := flag.String("o", "verge.schema.json", "output `file`")
	src := flag.String("src", ".", "`directory` of the config package's source")
	flag.Parse()
	b, err := Generate(*src)
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

// Generate returns the schema, with descriptions read from the Go files in srcDir.
func Generate(srcDir string) ([]byte, error) {
	docs, err := fieldDocs(srcDir)
	if err != nil {
		return nil, err
	}
	g := &gen{docs: docs, defs: map[string]any{}}
	root := g.structSchema(reflect.TypeFor[config.Config]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = "https://github.com/verge-edge/verge/config/verge.schema.json"
	root["title"] = "Verge configuration"
	root["description"] = "The YAML configuration of the verge edge proxy (docs/configuration.md)."
	root["$defs"] = g.defs
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// fieldDocs maps "Type.Field" to the field's doc comment, for the struct types of the
// package in dir.
func fieldDocs(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	docs := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		ast.Inspect(af, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return false
			}
			for _, fl := range st.Fields.List {
				doc := fl.Doc.Text()
				if doc == "" {
					doc = fl.Comment.Text()
				}
				for _, name := range fl.Names {
					docs[ts.Name.Name+"."+name.Name] = strings.Join(strings.Fields(doc), " ")
				}
			}
			return false
		})
	}
	return docs, nil
}

type gen struct {
	docs map[string]string
	defs map[string]any
}

// Patterns of the scalars config/decode.go parses itself.
var (
	durationRe = `^(0|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+)$`
	sizeRe     = `^\s*[0-9]+\s*(KiB|MiB|GiB|KB|MB|GB|B)?\s*$`
)

var (
	durationType   = reflect.TypeFor[config.Duration]()
	signedDurType  = reflect.TypeFor[config.SignedDuration]()
	sizeType       = reflect.TypeFor[config.Size]()
	stringListType = reflect.TypeFor[config.StringList]()
)

// nullable: the decoder accepts null for every field and leaves the zero value.
func nullable(s map[string]any) map[string]any {
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

func (g *gen) schema(t reflect.Type) map[string]any {
	switch t {
	case durationType:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "pattern": durationRe},
			map[string]any{"const": 0},
		}, "description": "A duration: 250ms, 5s, 1m30s, 2h; or 0."}
	case signedDurType:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "pattern": `^-?` + strings.TrimPrefix(durationRe, "^")},
			map[string]any{"enum": []any{0, -1, "-1"}},
		}, "description": "A duration (250ms, 5s, 1m); negative means no limit."}
	case sizeType:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "pattern": sizeRe},
			map[string]any{"type": "integer", "minimum": 0},
		}, "description": "A byte count: 4096, 32KiB, 1MiB, 1GB."}
	case stringListType:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string"},
			map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": nullable(g.schema(t.Elem()))}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": nullable(g.schema(t.Elem()))}
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = nil // recursion guard
			g.defs[name] = g.structSchema(t)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	panic("schemagen: unsupported field type " + t.String())
}

func (g *gen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		p := nullable(g.schema(f.Type))
		if d := g.docs[t.Name()+"."+f.Name]; d != "" {
			// The comment starts with the Go name; the file says the YAML key.
			if rest, ok := strings.CutPrefix(d, f.Name+" "); ok {
				d = tag + " " + rest
			}
			p["description"] = d
		}
		props[tag] = p
	}
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
}
