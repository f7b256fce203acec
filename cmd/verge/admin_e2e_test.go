package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// adminConfig is a config serving body on listen, with the given admin section.
func adminConfig(listen, pidFile, body, adminSection string) string {
	return fmt.Sprintf(`listeners:
  - name: main
    address: %s
routes:
  - respond: {body: %q}
access_log: {output: "off"}
pid_file: %q
shutdown: {grace_period: 2s}
%s`, listen, body, pidFile, adminSection)
}

// TestRunRefusesExposedAdmin starts the binary with an admin API on every interface and no
// token (and with a short token): it must exit 1 before serving, naming the file, position
// and field, instead of serving traffic with a dead admin port.
func TestRunRefusesExposedAdmin(t *testing.T) {
	for _, tc := range []struct {
		name, admin, want string
	}{
		{"no token", "admin:\n  address: 0.0.0.0:%s\n", `verge.yaml:10:12: admin.address: admin address 0.0.0.0:`},
		{"short token", "admin:\n  address: 0.0.0.0:%s\n  token: short\n", `verge.yaml:11:10: admin.token: token is 5 bytes; at least 16 are required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "verge.yaml")
			listen := freePort(t)
			_, admPort, _ := strings.Cut(freePort(t), ":")
			os.WriteFile(cfg, []byte(adminConfig(listen, filepath.Join(dir, "pid"), "up", fmt.Sprintf(tc.admin, admPort))), 0o644)
			bin := verge(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("verge run = %v, want exit status 1; stderr:\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), cfg[:len(cfg)-len("verge.yaml")]+tc.want) {
				t.Errorf("stderr does not name the file, position and field (want %q):\n%s", tc.want, stderr.String())
			}
		})
	}
}

// adminProc is a running verge with its admin API on a loopback port.
type adminProc struct {
	*proc
	admin string // host:port
}

func startWithAdmin(t *testing.T, body string) *adminProc {
	t.Helper()
	admin := freePort(t)
	p := launchVerge(t, func(p *proc) {
		os.WriteFile(p.cfgFile, []byte(adminConfig(p.addr, p.pidFile, body, "admin: {address: "+admin+"}\n")), 0o644)
	})
	ap := &adminProc{proc: p, admin: admin}
	waitFor(t, "verge to serve", 10*time.Second, func() bool {
		got, _ := p.get(http.DefaultClient, "/")
		return got == body
	})
	return ap
}

func (a *adminProc) send(t *testing.T, method, path, host, origin, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminCrossSiteThroughBinary replays the reported attack on the running binary: a
// text/plain POST /config with a foreign Origin and Host (what a web page sends without a
// preflight) must not replace the configuration; the CLI and a well-formed request still work.
func TestAdminCrossSiteThroughBinary(t *testing.T) {
	a := startWithAdmin(t, "original")
	_, before := a.send(t, "GET", "/config", "", "", "", "")
	evil := adminConfig(a.addr, a.pidFile, "pwned", "admin: {address: "+a.admin+"}\n")
	for _, c := range []struct {
		name, host, origin, ct string
		want                   int
	}{
		{"reported attack", "evil.example:" + strings.Split(a.admin, ":")[1], "http://evil.example", "text/plain", 403},
		{"text/plain from loopback", "", "", "text/plain", 415},
		{"form", "", "", "application/x-www-form-urlencoded", 415},
		{"rebinding", "rebind.evil.example:" + strings.Split(a.admin, ":")[1], "", "application/yaml", 403},
		{"foreign origin", "", "http://evil.example", "application/yaml", 403},
	} {
		if code, body := a.send(t, "POST", "/config", c.host, c.origin, c.ct, evil); code != c.want || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s: got %d %q, want %d with a JSON error", c.name, code, body, c.want)
		}
	}
	if got, _ := a.get(http.DefaultClient, "/"); got != "original" {
		t.Fatalf("traffic answers %q after refused requests, want original", got)
	}
	if _, after := a.send(t, "GET", "/config", "", "", "", ""); after != before {
		t.Fatalf("configuration changed by refused requests:\n%s", after)
	}

	// verge reload --admin sends what the API requires.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"reload", "--admin", "http://" + a.admin}, &stdout, &stderr); code != 0 || stdout.String() != "reloaded\n" {
		t.Errorf("verge reload --admin: code %d stdout %q stderr %q", code, stdout.String(), stderr.String())
	}
	// A same-origin, well-typed request is accepted.
	good := adminConfig(a.addr, a.pidFile, "replaced", "admin: {address: "+a.admin+"}\n")
	if code, body := a.send(t, "POST", "/config", "localhost:"+strings.Split(a.admin, ":")[1], "", "application/yaml", good); code != 200 {
		t.Fatalf("POST /config application/yaml: %d %s", code, body)
	}
	waitFor(t, "the posted config to serve", 5*time.Second, func() bool {
		got, _ := a.get(http.DefaultClient, "/")
		return got == "replaced"
	})
}

// TestReloadRefusesExposedAdmin: a reload (SIGHUP, and POST /config) that would put the admin
// API on every interface without a token is refused; the old configuration and admin API keep
// serving.
func TestReloadRefusesExposedAdmin(t *testing.T) {
	a := startWithAdmin(t, "kept")
	_, port, _ := strings.Cut(a.admin, ":")
	exposed := adminConfig(a.addr, a.pidFile, "exposed", "admin: {address: \"0.0.0.0:"+port+"\"}\n")
	if code, body := a.send(t, "POST", "/config", "", "", "application/yaml", exposed); code != 400 ||
		!strings.Contains(body, "admin.address") || !strings.Contains(body, "not loopback") {
		t.Errorf("POST /config exposing the admin API: %d %s, want 400 naming admin.address", code, body)
	}
	os.WriteFile(a.cfgFile, []byte(exposed), 0o644)
	a.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal in the log", 5*time.Second, func() bool {
		return strings.Contains(a.stderr.String(), "reload refused")
	})
	if !strings.Contains(a.stderr.String(), "verge.yaml:9:18: admin.address: admin address 0.0.0.0:"+port+" is not loopback") {
		t.Errorf("refusal does not name the position and field:\n%s", a.stderr.String())
	}
	if got, _ := a.get(http.DefaultClient, "/"); got != "kept" {
		t.Errorf("traffic answers %q after the refused reload, want kept", got)
	}
	if code, body := a.send(t, "GET", "/healthz", "", "", "", ""); code != 200 {
		t.Errorf("admin API after the refused reload: %d %s", code, body)
	}
}
