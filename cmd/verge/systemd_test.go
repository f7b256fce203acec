package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestSystemdUnitKeepsWorkersWorking checks the shipped unit against issue 12:
// MemoryDenyWriteExecute=true made workers about 40 times slower (the WebAssembly compiler
// cannot make memory executable and the runtime falls back to its interpreter), and
// ProtectSystem=strict without a StateDirectory= left worker data on a read-only path.
func TestSystemdUnitKeepsWorkersWorking(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testwasm.Root(), "docs", "systemd", "verge.service"))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	if v, ok := settings["MemoryDenyWriteExecute"]; ok && v != "false" && v != "no" {
		t.Errorf("MemoryDenyWriteExecute=%s: workers would run in the interpreter", v)
	}
	if settings["ProtectSystem"] == "strict" && settings["StateDirectory"] != "verge" && settings["ReadWritePaths"] == "" {
		t.Errorf("ProtectSystem=strict without StateDirectory=verge or ReadWritePaths=: worker data is read-only")
	}
}
