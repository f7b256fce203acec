package files

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// realRootOf is the root's path with its symlinks resolved, as /proc/self/fd reports the
// paths of the files opened under it; "" when it cannot be resolved (the check is then off).
func realRootOf(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		return ""
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return ""
	}
	return real
}

// linkReader reads the kernel's name of an open file; pooled, with its method value made
// once, so that a check allocates nothing.
type linkReader struct {
	path [32]byte // "/proc/self/fd/<fd>\x00"
	buf  [4096]byte
	n    int
	fn   func(fd uintptr)
}

var linkPool = sync.Pool{New: func() any {
	l := new(linkReader)
	l.fn = l.read
	return l
}}

func (l *linkReader) read(fd uintptr) {
	p := strconv.AppendUint(append(l.path[:0], "/proc/self/fd/"...), uint64(fd), 10)
	p = append(p, 0)
	n, _, errno := syscall.Syscall6(syscall.SYS_READLINKAT, atFDCWD,
		uintptr(unsafe.Pointer(&p[0])), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(len(l.buf)), 0, 0)
	l.n = int(n)
	if errno != 0 {
		l.n = -1
	}
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
var atFDCWD = ^uintptr(99) // two's complement of -100

// reachedHidden reports whether f, opened under the root through a name without dotfiles,
// is in fact a dotfile or under a dot directory: a symlink inside the root (x -> .env,
// conf -> .git) led there. The kernel's name of the open file is read from /proc/self/fd
// (one readlink per open); when it is not available, or names a place outside the real
// root (the root was moved), the answer is false and os.Root's confinement still holds.
func (h *Handler) reachedHidden(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	l := linkPool.Get().(*linkReader)
	defer linkPool.Put(l)
	l.n = -1
	if rc.Control(l.fn) != nil || l.n <= 0 || l.n >= len(l.buf) {
		return false
	}
	real, root := l.buf[:l.n], h.realRoot
	if len(real) <= len(root) || string(real[:len(root)]) != root || real[len(root)] != '/' {
		return false
	}
	rest := real[len(root)+1:]
	for len(rest) > 0 {
		seg := rest
		for i, c := range rest {
			if c == '/' {
				seg = rest[:i]
				break
			}
		}
		rest = rest[len(seg):]
		if len(rest) > 0 {
			rest = rest[1:]
		}
		if len(seg) > 0 && seg[0] == '.' && string(seg) != ".well-known" {
			return true
		}
	}
	return false
}
