package main

import (
	"io"
	"os"

	"github.com/verge-edge/verge/config"
)

// cmdSchema prints the JSON Schema of the config file (config.JSONSchema), or writes it to a
// file with -o.
func cmdSchema(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("schema", "schema [-o FILE]", stderr)
	out := fs.String("o", "", "write the schema to this `file` instead of standard output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out != "" {
		return os.WriteFile(*out, config.JSONSchema, 0o644)
	}
	_, err := stdout.Write(config.JSONSchema)
	return err
}
