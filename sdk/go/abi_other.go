//go:build !wasip1

package sdk

// rawCall outside WebAssembly: there is no host, so every operation fails. The SDK compiles
// natively so that worker packages can be vetted and unit-tested with the rest of a module.
func rawCall(op uint32, arg []byte) ([]byte, error) {
	return nil, &Error{Code: ErrUnavailable, Message: "verge sdk: no host (build with GOOS=wasip1 GOARCH=wasm)"}
}

// rawCallInto fails like rawCall.
func rawCallInto(op uint32, arg, dst []byte) (int, error) {
	_, err := rawCall(op, arg)
	return 0, err
}
