package wasm

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// compilerCheck is CompilerAvailable's test: what wazero itself tries before choosing its
// compiler (a page made executable after being written), so that the answer is the same.
func compilerCheck() error {
	switch {
	case runtime.GOARCH == "amd64" && !cpu.X86.HasSSE41:
		return errors.New("the CPU lacks SSE4.1, which the WebAssembly compiler needs")
	case runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64":
		return fmt.Errorf("the WebAssembly compiler does not support %s", runtime.GOARCH)
	}
	page, err := unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("mapping a page for machine code: %w", err)
	}
	defer unix.Munmap(page)
	if err := unix.Mprotect(page, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		return fmt.Errorf("the process may not make written memory executable (mprotect PROT_EXEC: %w); "+
			"under systemd this is MemoryDenyWriteExecute=yes in the unit (remove it), elsewhere a policy such as SELinux execmem or PaX MPROTECT", err)
	}
	return nil
}
