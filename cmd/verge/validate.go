package main

import (
	"fmt"
	"io"

	"github.com/verge-edge/verge/config"
)

// cmdValidate checks a config file: "ok" and exit 0, or one error per line
// (file:line:column: field: problem) and exit 1.
func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "validate -c FILE", stderr)
	file := fs.String("c", "verge.yaml", "config `file` to check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := config.Load(*file); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError(1)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
