package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cloudflare/tableflip"
)

// pidLockFile names the pid file's lock among the files an upgrade passes to the new process.
const pidLockFile = "verge-pid-lock"

// lockPIDFile makes this process the only server using the pid file at path: it holds an
// exclusive lock on path+".lock" for as long as it runs. A process started by an upgrade
// inherits the lock from the old one (a lock belongs to the open file, which both share), and
// passes it on at its own upgrade. A second server given the same pid file is refused, so
// that `verge reload` can never signal the wrong one. The lock file is left in place: removing
// it would let two servers lock two different files of the same name.
func lockPIDFile(path string, upg *tableflip.Upgrader) (*os.File, error) {
	var f *os.File
	if upg != nil {
		inherited, err := upg.Fds.File(pidLockFile)
		if err != nil {
			return nil, fmt.Errorf("pid file lock: %w", err)
		}
		f = inherited
	}
	inherited := f != nil
	if f == nil {
		// Not a link, and only the owner may open it: another user could hold a lock even
		// through a read-only descriptor.
		var err error
		f, err = os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("pid file lock: %w", err)
		}
		if err := checkOwner(f, path+".lock"); err != nil {
			f.Close()
			return nil, fmt.Errorf("pid file lock: %w", err)
		}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another verge"
			if pid, err := readPID(path); err == nil {
				who = fmt.Sprintf("another verge (pid %d)", pid)
			}
			return nil, fmt.Errorf("pid file %s is in use by %s; give each server its own pid_file (or --pid-file)", path, who)
		}
		return nil, fmt.Errorf("pid file lock: %w", err)
	}
	if upg != nil && !inherited {
		if err := upg.Fds.AddFile(pidLockFile, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("pid file lock: %w", err)
		}
	}
	return f, nil
}

// writePIDFile writes the pid atomically (used when the upgrader, which writes it itself,
// is unavailable).
func writePIDFile(path string) error {
	return writeFileAtomic(path, []byte(fmt.Sprintf("%d\n", os.Getpid())))
}

// writeFileAtomic replaces path with a file holding data. The new file is created under a
// random name (O_EXCL: never through a link or into a file someone placed there, which the
// pid file's directory, by default the temporary directory, would allow) and renamed over
// path; a path owned by another user in a sticky directory is not replaced (rename fails).
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// readOwnFile reads a file verge wrote, refusing one another user could have put there (see
// checkOwner) and a link.
func readOwnFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkOwner(f, path); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, 1<<16))
}

// checkOwner refuses f, opened from path, when it is not a regular file, or when another
// user owns it and others than its directory's owner may create files in that directory
// (the temporary directory, where the default pid file lives): someone there could have
// planted it to have `verge reload` signal another process or report a wrong result. A file
// of the service's user in a directory of its own (/run/verge) is fine for root.
func checkOwner(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || !ok {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if int(st.Uid) == os.Geteuid() {
		return nil
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	if di.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s belongs to uid %d, not to this user, in a directory others can write to; remove it, or use a pid_file in a directory of verge's own", path, st.Uid)
	}
	return nil
}

// removeOwnPIDFile removes the pid file if it still names this process.
func removeOwnPIDFile(path string) {
	if pid, err := readPID(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
	if readReloadStatus(path).PID == os.Getpid() {
		os.Remove(reloadStatusPath(path))
	}
}

func readPID(path string) (int, error) {
	data, err := readOwnFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w (is verge running? pass --pid-file or -c)", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds no pid", path)
	}
	return pid, nil
}

// reloadStatus is the outcome of the last SIGHUP reload of a server, written next to its pid
// file (reloadStatusPath) so that `verge reload` can report it.
type reloadStatus struct {
	PID   int    `json:"pid"`
	Seq   int    `json:"seq"` // counts this process's SIGHUP reloads, from 1
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func reloadStatusPath(pidFile string) string { return pidFile + ".reload" }

// writeReloadStatus records the result of reload number seq of this process.
func writeReloadStatus(pidFile string, seq int, err error) error {
	st := reloadStatus{PID: os.Getpid(), Seq: seq, OK: err == nil}
	if err != nil {
		st.Error = err.Error()
	}
	data, _ := json.Marshal(st)
	return writeFileAtomic(reloadStatusPath(pidFile), append(data, '\n'))
}

// readReloadStatus reads the status file; a missing or unreadable one is the zero status,
// and so is one another user could have written (checkOwner).
func readReloadStatus(pidFile string) reloadStatus {
	var st reloadStatus
	data, err := readOwnFile(reloadStatusPath(pidFile))
	if err == nil {
		json.Unmarshal(data, &st)
	}
	return st
}
