package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/config"
)

// adminCallTimeout bounds one CLI call to the admin API (a cluster purge waits up to 5 s for
// the other nodes).
const adminCallTimeout = 30 * time.Second

// maxAdminAnswer bounds an admin API answer read by the CLI.
const maxAdminAnswer = 16 << 20

// adminClient is how CLI commands talk to a running server's admin API.
type adminClient struct {
	base, token string
}

// adminFlags adds --admin, --token and -c to fs; call client() after parsing.
func adminFlags(fs *flag.FlagSet) func() (adminClient, error) {
	base := fs.String("admin", "http://"+admin.DefaultAddr, "admin API `URL` of the running server")
	token := fs.String("token", "", "admin API bearer `token` (default: $VERGE_ADMIN_TOKEN)")
	file := fs.String("c", "", "the running server's config `file`: its admin address and token (instead of --admin, --token)")
	return func() (adminClient, error) {
		tok := *token
		b := *base
		if *file != "" {
			cfg, err := config.Load(*file)
			if err != nil {
				return adminClient{}, err
			}
			if cfg.Admin.Disabled {
				return adminClient{}, fmt.Errorf("%s: the admin API is disabled", *file)
			}
			b = cfg.Admin.Address
			if tok == "" {
				tok = cfg.Admin.Token
				if tok == "" && cfg.Admin.TokenFile != "" {
					if tok, err = config.ReadToken(cfg.Admin.TokenFile); err != nil {
						return adminClient{}, fmt.Errorf("%s: admin.token_file: %w", *file, err)
					}
				}
			}
		}
		if tok == "" {
			tok = os.Getenv("VERGE_ADMIN_TOKEN")
		}
		b = strings.TrimSuffix(b, "/")
		if !strings.Contains(b, "://") {
			b = "http://" + b
		}
		return adminClient{base: b, token: tok}, nil
	}
}

// call sends a request (body, when not nil, as JSON) and returns the status and body.
func (a adminClient) call(method, path string, body any) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminCallTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("admin url: %w", err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("admin api: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("admin api: reading the answer: %w", err)
	}
	return resp.StatusCode, b, nil
}

// adminError turns an error answer into an error naming the status and the API's message.
func adminError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return fmt.Errorf("admin api answered %d %s: %s", status, http.StatusText(status), msg)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
