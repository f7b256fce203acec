package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

// A hidden CPU profiling hook for benchmarks (bench/profile.sh, docs/performance.md).
//
// VERGE_CPUPROFILE=path starts a CPU profile when the process starts and writes it to path
// after VERGE_CPUPROFILE_SECONDS seconds (default 30). A fixed duration rather than a signal,
// because the serve loop owns SIGTERM and exits through os.Exit, which would skip the flush.
// Unset, it costs nothing.
func init() {
	path := os.Getenv("VERGE_CPUPROFILE")
	if path == "" {
		return
	}
	secs := 30 * time.Second
	if v := os.Getenv("VERGE_CPUPROFILE_SECONDS"); v != "" {
		d, err := time.ParseDuration(v + "s")
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "verge: VERGE_CPUPROFILE_SECONDS=%q: want a positive number\n", v)
			os.Exit(2)
		}
		secs = d
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "verge: cpu profile: %v\n", err)
		os.Exit(2)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "verge: cpu profile: %v\n", err)
		os.Exit(2)
	}
	time.AfterFunc(secs, func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "verge: cpu profile: %v\n", err)
			return
		}
		fmt.Fprintf(os.Stderr, "verge: cpu profile written to %s\n", path)
	})
}
