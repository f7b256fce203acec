package config

import _ "embed"

// JSONSchema is the JSON Schema (draft 2020-12) of the config file, for editors and CI
// checks: `verge schema` prints it. It is generated from this package's types and their doc
// comments by internal/schemagen; a test fails when it is out of date.
//
//go:generate go run ../internal/schemagen -o verge.schema.json
//go:embed verge.schema.json
var JSONSchema []byte
