package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/verge-edge/verge/config"
)

// reloadWait is how long `verge reload` waits by default for the server to report the
// result of a reload asked for by signal.
const reloadWait = time.Minute

// cmdReload asks a running server to reload: by SIGHUP to the pid in its pid file (the
// default), or through the admin API with --admin. Either way it reports the result: exit
// status 0 when the new configuration serves, 1 when it was refused (the old one keeps
// serving).
func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reload", "reload [-c FILE | --pid-file FILE | --admin URL [--token T]] [--timeout D]", stderr)
	file := fs.String("c", "verge.yaml", "config `file` of the running server: its pid_file, else the pid file `verge run -c FILE` uses by default")
	pidFile := fs.String("pid-file", "", "pid `file` written by verge run (overrides -c)")
	adminURL := fs.String("admin", "", "reload through the admin API at this `URL` (e.g. http://127.0.0.1:9901) instead of a signal")
	token := fs.String("token", "", "admin API bearer `token` (default: $VERGE_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", reloadWait, "how long to wait for the server to report the reload's result")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *adminURL != "" {
		tok := *token
		if tok == "" {
			tok = os.Getenv("VERGE_ADMIN_TOKEN")
		}
		return reloadByAdmin(*adminURL, tok, stdout)
	}
	path := *pidFile
	if path == "" {
		cfg, err := config.Load(*file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError(1)
		}
		path = cfg.PIDFile
	}
	return reloadBySignal(path, *timeout, stdout)
}

// reloadBySignal sends SIGHUP to the server whose pid is in pidFile and waits for the
// reload status it writes after the attempt (see writeReloadStatus).
func reloadBySignal(pidFile string, wait time.Duration, stdout io.Writer) error {
	pid, err := readPID(pidFile)
	if err != nil {
		return err
	}
	before := readReloadStatus(pidFile)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal process %d (from %s): %w", pid, pidFile, err)
	}
	deadline := time.Now().Add(wait)
	for {
		st := readReloadStatus(pidFile)
		if st.PID == pid && (before.PID != pid || st.Seq > before.Seq) {
			if !st.OK {
				return fmt.Errorf("reload refused; the previous configuration keeps serving: %s", st.Error)
			}
			fmt.Fprintf(stdout, "reloaded (pid %d)\n", pid)
			return nil
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return fmt.Errorf("verge (pid %d) is gone: %w", pid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sent SIGHUP to verge (pid %d), but it reported no result within %v; see its log", pid, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func reloadByAdmin(base, token string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/reload", nil)
	if err != nil {
		return fmt.Errorf("admin url: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The admin API takes state-changing requests only with a declared JSON body type.
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return errors.New("reload refused: " + strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, "reloaded")
	return nil
}
