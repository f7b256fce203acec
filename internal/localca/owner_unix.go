//go:build unix

package localca

import (
	"io/fs"
	"os"
	"syscall"
)

// unixModes: permission bits say who can read a file.
const unixModes = true

// ownedByMe reports whether the file belongs to the user running Verge.
func ownedByMe(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return !ok || int(sys.Uid) == os.Geteuid()
}
