//go:build !linux

package wasm

import (
	"fmt"
	"runtime"
)

// compilerCheck is CompilerAvailable's test where the executable-memory probe is not made.
func compilerCheck() error {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		return fmt.Errorf("the WebAssembly compiler does not support %s", runtime.GOARCH)
	}
	return nil
}
