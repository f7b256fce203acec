// Command probe measures pieces of an invocation, selected by kind.
package main

import (
	"net/url"
	"unsafe"
)

//go:wasmimport verge call
func hostCall(op uint32, arg unsafe.Pointer, argLen uint32, out unsafe.Pointer, outCap uint32) uint64

var buf = make([]byte, 16<<10)
var sink any

//go:wasmexport verge_handle
func handle(kind uint32) uint32 {
	switch kind {
	case 1:
		hostCall(1, nil, 0, unsafe.Pointer(&buf[0]), uint32(len(buf)))
	case 2:
		u, _ := url.Parse("http://example.com/abc")
		sink = u
	case 3:
		sink = make([]byte, 1024)
	case 4:
		for i := 0; i < 10; i++ {
			sink = make([]byte, 64)
		}
	case 5:
		for i := 0; i < 1000; i++ {
			sink = make([]byte, 64)
		}
	case 6:
		x := 0
		for i := 0; i < 100000; i++ {
			x += i * i
		}
		sink = x
	}
	return 0
}

func main() {}
