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
		var err error
		f, err = openOwn(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
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

// writeFileAtomic replaces path with a file holding data. The temporary file has a random
// name and is created exclusively: in a shared directory such as /tmp, another user could
// otherwise plant a symbolic link under a fixed temporary name and have this process write
// through it into any file it may write.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// openOwn opens one of the pid file's companions without following a symbolic link, and in
// a directory every user may write to (the default pid file's /tmp) only when the file
// belongs to this process's user: another local user could create it first, to feed
// `verge reload` a pid or a result, or to make `verge run` lock a file they hold.
func openOwn(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return nil, err
	}
	if err := checkOwner(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkOwner(f *os.File, path string) error {
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil || dir.Mode().Perm()&0o002 == 0 {
		return err // only the directory's writers could have made the file
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Geteuid() || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file of this user in a directory shared with other users; remove it or choose another pid_file", path)
	}
	return nil
}

// readOwn reads a file opened by openOwn.
func readOwn(path string) ([]byte, error) {
	f, err := openOwn(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<16))
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
	data, err := readOwn(path)
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

// readReloadStatus reads the status file; a missing or unreadable one is the zero status.
func readReloadStatus(pidFile string) reloadStatus {
	var st reloadStatus
	data, err := readOwn(reloadStatusPath(pidFile))
	if err == nil {
		json.Unmarshal(data, &st)
	}
	return st
}
