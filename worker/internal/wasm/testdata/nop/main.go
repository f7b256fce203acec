// Command nop exports a verge_handle that returns at once: the floor of an invocation.
package main

//go:wasmexport verge_handle
func handle(kind uint32) uint32 { return 0 }

func main() {}
