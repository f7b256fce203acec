// Package tools holds the small load and setup programs of Verge's benchmark suite
// (bench/run.sh). It is its own module, standard library only, so that the main module's
// dependencies stay as they are.
package tools
