package config_test

import (
	"testing"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/config"
)

// TestAdminTokenMinimumAgrees: validation refuses exactly the tokens the admin server would
// refuse at start (the two packages do not import each other).
func TestAdminTokenMinimumAgrees(t *testing.T) {
	if config.MinAdminTokenBytes != admin.MinTokenBytes {
		t.Fatalf("config.MinAdminTokenBytes %d, admin.MinTokenBytes %d", config.MinAdminTokenBytes, admin.MinTokenBytes)
	}
}
