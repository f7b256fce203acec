//go:build wasip1

package sdk

import "unsafe"

//go:wasmimport verge call
func hostCall(op uint32, arg unsafe.Pointer, argLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport verge result
func hostResult(dst unsafe.Pointer)

// outBuf receives small results directly, saving the second host call.
var outBuf = make([]byte, 16<<10)

// rawCall performs one host operation. The returned slice may alias a shared buffer: decode
// it before the next call.
func rawCall(op uint32, arg []byte) ([]byte, error) {
	var argPtr unsafe.Pointer
	if len(arg) > 0 {
		argPtr = unsafe.Pointer(&arg[0])
	}
	r := hostCall(op, argPtr, uint32(len(arg)), unsafe.Pointer(&outBuf[0]), uint32(len(outBuf)))
	status, n := uint32(r>>32), int(uint32(r))
	var res []byte
	if n <= len(outBuf) {
		res = outBuf[:n]
	} else {
		res = make([]byte, n)
		hostResult(unsafe.Pointer(&res[0]))
	}
	if status != 0 {
		return nil, &Error{Code: ErrorCode(status), Message: string(res)}
	}
	return res, nil
}

// rawCallInto performs one host operation whose result is written straight into dst (the
// host returns at most len(dst) bytes, as OpBodyRead does) and returns its length. An error
// message may have been written into dst too.
func rawCallInto(op uint32, arg, dst []byte) (int, error) {
	r := hostCall(op, unsafe.Pointer(&arg[0]), uint32(len(arg)), unsafe.Pointer(&dst[0]), uint32(len(dst)))
	status, n := uint32(r>>32), int(uint32(r))
	var res []byte
	if n <= len(dst) {
		res = dst[:n]
	} else {
		res = make([]byte, n)
		hostResult(unsafe.Pointer(&res[0]))
	}
	if status != 0 {
		return 0, &Error{Code: ErrorCode(status), Message: string(res)}
	}
	return n, nil
}

//go:wasmexport verge_abi_version
func abiVersion() uint32 { return ABIVersion }

//go:wasmexport verge_handle
func handleExport(kind uint32) uint32 { return dispatch(kind) }
