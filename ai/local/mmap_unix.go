//go:build unix

package local

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the model file read-only, so a multi-gigabyte model is paged
// in from the page cache rather than copied to the heap. The mapping is
// released by unmap.
func mapFile(path string) (data []byte, unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	size := fi.Size()
	if size == 0 || int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: size %d cannot be mapped", path, size)
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return data, func() { unix.Munmap(data) }, nil
}
