package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A local user who plants a symbolic link where the pid file's companions are written or
// read (the default pid file is in /tmp) must not make verge write through it, nor make
// `verge reload` read a pid or a result from it.
func TestPIDFileCompanionsFollowNoLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "verge.pid")
	for _, name := range []string{pidFile + ".tmp", reloadStatusPath(pidFile) + ".tmp"} {
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := writePIDFile(pidFile); err != nil {
		t.Fatal(err)
	}
	if err := writeReloadStatus(pidFile, 1, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the file behind a planted link was overwritten: %q", b)
	}
	if st := readReloadStatus(pidFile); st.PID != os.Getpid() || st.Seq != 1 || !st.OK {
		t.Fatalf("reload status = %+v", st)
	}

	// Links in place of the files themselves are not followed.
	os.WriteFile(victim, []byte("1\n"), 0o600)
	for _, name := range []string{pidFile, reloadStatusPath(pidFile), pidFile + ".lock"} {
		os.Remove(name)
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}
	if pid, err := readPID(pidFile); err == nil {
		t.Fatalf("readPID followed a link: pid %d", pid)
	}
	if st := readReloadStatus(pidFile); st != (reloadStatus{}) {
		t.Fatalf("readReloadStatus followed a link: %+v", st)
	}
	if f, err := lockPIDFile(pidFile, nil); err == nil {
		f.Close()
		t.Fatal("lockPIDFile followed a link")
	}
}

// In a directory every user may write to, files of another user are refused.
func TestPIDFileOfAnotherUserInSharedDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "verge.pid")
	for _, name := range []string{pidFile, reloadStatusPath(pidFile), pidFile + ".lock"} {
		data := "1\n"
		if strings.HasSuffix(name, ".reload") {
			data = `{"pid":1,"seq":7,"ok":true}`
		}
		if err := os.WriteFile(name, []byte(data), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(name, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if pid, err := readPID(pidFile); err == nil {
		t.Fatalf("readPID accepted another user's pid file: pid %d", pid)
	}
	if st := readReloadStatus(pidFile); st != (reloadStatus{}) {
		t.Fatalf("readReloadStatus accepted another user's file: %+v", st)
	}
	if f, err := lockPIDFile(pidFile, nil); err == nil {
		f.Close()
		t.Fatal("lockPIDFile locked another user's file")
	}

	// The same files of this user are fine.
	for _, name := range []string{pidFile, reloadStatusPath(pidFile), pidFile + ".lock"} {
		if err := os.Chown(name, os.Geteuid(), os.Getegid()); err != nil {
			t.Fatal(err)
		}
	}
	if pid, err := readPID(pidFile); err != nil || pid != 1 {
		t.Fatalf("readPID = %d, %v", pid, err)
	}
	if st := readReloadStatus(pidFile); st.Seq != 7 {
		t.Fatalf("readReloadStatus = %+v", st)
	}
	f, err := lockPIDFile(pidFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// A pid file named without a directory is written in the working directory (its temporary
// file too, not in $TMPDIR).
func TestPIDFileRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	if err := writePIDFile("verge.pid"); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPID("verge.pid"); err != nil || pid != os.Getpid() {
		t.Fatalf("readPID = %d, %v", pid, err)
	}
	if left, _ := filepath.Glob("verge.pid.*"); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
