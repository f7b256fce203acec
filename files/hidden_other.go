//go:build !linux

package files

import "os"

// realRootOf is "" off Linux: the check of symlinks leading to dotfiles needs /proc.
func realRootOf(string) string { return "" }

// reachedHidden is false off Linux (docs/files.md): a symlink inside the root naming a
// dotfile is followed there.
func (h *Handler) reachedHidden(*os.File) bool { return false }
