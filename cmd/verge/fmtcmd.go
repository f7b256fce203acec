package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/verge-edge/verge/config"
)

// cmdFmt reformats config files (config.Format). With no file it reads standard input and
// writes standard output.
func cmdFmt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("fmt", "fmt [-w | -l | --check] [FILE...]", stderr)
	write := fs.Bool("w", false, "write the result to each file instead of standard output")
	list := fs.Bool("l", false, "list the files whose formatting differs, and change nothing")
	check := fs.Bool("check", false, "like -l, and exit 1 when a file's formatting differs (for CI)")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *write && (*list || *check) {
		fmt.Fprintln(stderr, "verge fmt: -w does not go with -l or --check")
		return errUsage
	}
	if len(files) == 0 {
		if *write {
			fmt.Fprintln(stderr, "verge fmt: -w needs a file")
			return errUsage
		}
		src, err := io.ReadAll(io.LimitReader(stdin, maxConfigSize+1))
		if err != nil {
			return err
		}
		if len(src) > maxConfigSize {
			return fmt.Errorf("standard input: more than %d bytes", maxConfigSize)
		}
		out, err := config.Format(src, "<stdin>")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError(1)
		}
		if *list || *check {
			if !bytes.Equal(src, out) {
				fmt.Fprintln(stdout, "<stdin>")
				if *check {
					return exitError(1)
				}
			}
			return nil
		}
		_, err = stdout.Write(out)
		return err
	}
	failed, differ := false, false
	for _, f := range files {
		src, err := readConfigFile(f)
		if err != nil {
			fmt.Fprintln(stderr, "verge fmt:", err)
			failed = true
			continue
		}
		out, err := config.Format(src, f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			failed = true
			continue
		}
		switch {
		case *list || *check:
			if !bytes.Equal(src, out) {
				fmt.Fprintln(stdout, f)
				differ = true
			}
		case *write:
			if bytes.Equal(src, out) {
				continue
			}
			if err := replaceFile(f, out); err != nil {
				fmt.Fprintln(stderr, "verge fmt:", err)
				failed = true
			}
		default:
			if _, err := stdout.Write(out); err != nil {
				return err
			}
		}
	}
	if failed || (*check && differ) {
		return exitError(1)
	}
	return nil
}

// maxConfigSize bounds what verge fmt reads: far above any real config.
const maxConfigSize = 16 << 20

func readConfigFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err == nil && len(b) > maxConfigSize {
		err = fmt.Errorf("%s: more than %d bytes", name, maxConfigSize)
	}
	return b, err
}

// replaceFile writes data over name atomically (a new file renamed over it), keeping its
// permission bits; a symbolic link is followed, so the file it points to is replaced and the
// link stays.
func replaceFile(name string, data []byte) error {
	target, err := filepath.EvalSymlinks(name)
	if err != nil {
		return err
	}
	st, err := os.Stat(target)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(st.Mode().Perm())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), target)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
