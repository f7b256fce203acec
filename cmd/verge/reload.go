package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/verge-edge/verge/config"
)

// cmdReload asks a running server to reload: by SIGHUP to the pid in its pid file (the
// default), or through the admin API with --admin.
func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reload", "reload [-c FILE | --pid-file FILE | --admin URL [--token T]]", stderr)
	file := fs.String("c", "", "config `file` of the running server; its pid_file is used (default: "+config.DefaultPIDFile()+")")
	pidFile := fs.String("pid-file", "", "pid `file` written by verge run")
	adminURL := fs.String("admin", "", "reload through the admin API at this `URL` (e.g. http://127.0.0.1:9901) instead of a signal")
	token := fs.String("token", "", "admin API bearer `token` (default: $VERGE_ADMIN_TOKEN)")
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
	if path == "" && *file != "" {
		cfg, err := config.Load(*file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError(1)
		}
		path = cfg.PIDFile
	}
	if path == "" {
		path = config.DefaultPIDFile()
	}
	pid, err := readPID(path)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal process %d (from %s): %w", pid, path, err)
	}
	fmt.Fprintf(stdout, "sent SIGHUP to verge (pid %d); the result is in its log\n", pid)
	return nil
}

func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w (is verge running? pass --pid-file or -c)", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds no pid", path)
	}
	return pid, nil
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
