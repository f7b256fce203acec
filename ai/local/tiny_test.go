package local

import (
	"context"
	"strings"
	"testing"

	"github.com/verge-edge/verge/ai/local/internal/tinymodel"
)

// TestTinyModelWritesWords checks the built-in model is the trigram model
// it is meant to be: at temperature 0.5 most of what it writes are words of
// its text. (A character bigram model, which is what remains when the
// previous-token attention head breaks, scores well below the threshold.)
func TestTinyModelWritesWords(t *testing.T) {
	m := openTiny(t, Options{})
	known := map[string]bool{}
	for _, w := range strings.Fields(tinymodel.Corpus()) {
		known[strings.ToLower(strings.Trim(w, ".,;"))] = true
	}
	var total, hits int
	for seed := range int64(8) {
		mt, temp := 150, 0.5
		r, err := m.Complete(context.Background(), "The", Sampling{MaxTokens: &mt, Temperature: &temp, Seed: &seed}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range strings.Fields(r.Text) {
			total++
			if known[strings.ToLower(strings.Trim(w, ".,;"))] {
				hits++
			}
		}
	}
	frac := float64(hits) / float64(total)
	t.Logf("%d of %d words are from the text (%.0f%%)", hits, total, 100*frac)
	if total < 50 || frac < threshold {
		t.Fatalf("%d of %d words are from the text; want at least %.0f%%", hits, total, 100*threshold)
	}
}

const threshold = 0.5
