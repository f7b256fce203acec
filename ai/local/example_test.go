package local_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/verge-edge/verge/ai/local"
)

// Open("") loads the model built into the binary; Open("/path/model.gguf")
// loads a GGUF file through the same code.
func ExampleOpen() {
	m, err := local.Open("")
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Name(), m.ContextLength())
	// Output: verge-tiny 1024
}

// The handler speaks the OpenAI-compatible API.
func ExampleModel_Handler() {
	m, err := local.Open("")
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"verge-tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"seed":1}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.Contains(string(body), `"object":"chat.completion"`))
	// Output: 200 true
}

// Chat streams the reply's pieces to a callback as they are decided.
func ExampleModel_Chat() {
	m, err := local.Open("")
	if err != nil {
		panic(err)
	}
	maxTokens, seed := 20, int64(7)
	var pieces int
	res, err := m.Chat(context.Background(),
		[]local.Message{{Role: "user", Content: "Tell me about caches."}},
		local.Sampling{MaxTokens: &maxTokens, Seed: &seed},
		func(piece string) error { pieces++; return nil })
	if err != nil {
		panic(err)
	}
	fmt.Println(pieces > 0, res.Usage.CompletionTokens <= maxTokens, res.FinishReason != "")
	// Output: true true true
}
