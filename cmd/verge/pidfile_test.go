package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPIDFileWritesFollowNoPlantedLink: the reload status (and the pid file, written the same
// way) is never written through a link someone placed at the temporary file's name; the file
// the link points to is left alone.
func TestPIDFileWritesFollowNoPlantedLink(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "verge.pid")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{reloadStatusPath(pidFile) + ".tmp", pidFile + ".tmp"} {
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeReloadStatus(pidFile, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := writePIDFile(pidFile); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the linked file was overwritten: %q", b)
	}
	if st := readReloadStatus(pidFile); st.PID != os.Getpid() || st.Seq != 1 || !st.OK {
		t.Fatalf("reload status: got %+v, want pid %d seq 1 ok", st, os.Getpid())
	}
	if pid, err := readPID(pidFile); err != nil || pid != os.Getpid() {
		t.Fatalf("pid file: got %d, %v; want %d", pid, err, os.Getpid())
	}
	if fi, err := os.Stat(pidFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("pid file mode: %v %v, want 0644", fi.Mode(), err)
	}
}

// TestPIDFilesOfAnotherUserRefused: in a directory anyone may write to (the temporary
// directory, the default pid file's), a pid file, reload status or lock file of another user
// is not trusted: it could name any process for `verge reload` to signal, or report a reload
// that never happened. A link is not followed either.
func TestPIDFilesOfAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a file of another user needs root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "verge.pid")
	plant := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(data), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(name, 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	plant(pidFile, "1\n")
	plant(reloadStatusPath(pidFile), `{"pid":1,"seq":99,"ok":true}`)
	plant(pidFile+".lock", "")
	if pid, err := readPID(pidFile); err == nil {
		t.Errorf("planted pid file: got pid %d, want an error", pid)
	}
	if st := readReloadStatus(pidFile); st != (reloadStatus{}) {
		t.Errorf("planted reload status: got %+v, want none", st)
	}
	if f, err := lockPIDFile(pidFile, nil); err == nil {
		f.Close()
		t.Errorf("planted lock file: locked it, want an error")
	}

	// A directory only its owner writes to (RuntimeDirectory=): the service user's files are
	// trusted by root.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPID(pidFile); err != nil || pid != 1 {
		t.Errorf("pid file in a private directory: got %d, %v; want 1", pid, err)
	}

	// A link is never followed.
	link := filepath.Join(dir, "link.pid")
	if err := os.Symlink(pidFile, link); err != nil {
		t.Fatal(err)
	}
	if _, err := readPID(link); err == nil {
		t.Errorf("pid file behind a link: read it, want an error")
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), link+".lock"); err != nil {
		t.Fatal(err)
	}
	if f, err := lockPIDFile(link, nil); err == nil {
		f.Close()
		t.Errorf("lock file behind a link: locked it, want an error")
	}
	if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file link was followed: %v", err)
	}
}
