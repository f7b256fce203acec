package h3

import (
	"context"
	"testing"
)

// TestAwaitHandshakes: AwaitHandshakes returns at once with none in flight, waits while
// one is, returns when it ends, and gives up with its context.
func TestAwaitHandshakes(t *testing.T) {
	s := &Server{}
	if err := s.AwaitHandshakes(context.Background()); err != nil {
		t.Fatalf("no handshakes: %v", err)
	}
	st := s.config()
	st.handshakes.Add(2)
	done := make(chan error, 1)
	go func() { done <- s.AwaitHandshakes(context.Background()) }()
	st.handshakeEnded()
	select {
	case err := <-done:
		t.Fatalf("returned with a handshake still in flight: %v", err)
	default:
	}
	st.handshakeEnded()
	if err := <-done; err != nil {
		t.Fatalf("after the last handshake ended: %v", err)
	}
	st.handshakes.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.AwaitHandshakes(ctx); err == nil {
		t.Fatal("a cancelled wait returned nil with a handshake in flight")
	}
}
