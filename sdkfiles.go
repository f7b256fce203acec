// Package verge carries the source of the Go worker SDK inside the verge binary.
//
// The module github.com/verge-edge/verge is not published to a module proxy, so a worker
// project outside this repository cannot fetch the SDK with `go get`. Instead `verge init`
// writes the SDK files embedded here into the project (a local copy of the module that holds
// only the SDK and the packages it imports, reached through a replace directive), and the
// project then builds with nothing but the Go toolchain, offline. The copy always matches the
// host ABI of the binary that wrote it; docs/workers.md has the layout and how to refresh it.
package verge

import "embed"

// SDKSource is the worker SDK's source at its paths in this module: the SDK package and every
// package of this module it imports (SDKPackages). Test files are included; writers skip
// them. A test checks that the embedded files equal the tree and that SDKPackages is closed
// under the SDK's imports.
//
//go:embed sdk/go/*.go internal/workerabi/*.go htmlrewrite/*.go
var SDKSource embed.FS

// SDKModule is the path of the module the SDK belongs to.
const SDKModule = "github.com/verge-edge/verge"

// SDKPackages are the directories of SDKSource, relative to the module root; the first is
// the SDK package that workers import (SDKModule + "/sdk/go").
var SDKPackages = []string{"sdk/go", "internal/workerabi", "htmlrewrite"}

// SDKGoVersion is the Go language version the SDK needs (wasip1 exports, go:wasmexport,
// came with Go 1.24), and the go directive written in scaffolded projects.
const SDKGoVersion = "1.24"
