//go:build !unix

package local

import "os"

// mapFile reads the model file into memory where mmap is not available.
func mapFile(path string) (data []byte, unmap func(), err error) {
	data, err = os.ReadFile(path)
	return data, func() {}, err
}
