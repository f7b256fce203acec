// Command aihostile misuses the AI binding: through a name not bound, with a request too
// large, without a model, on a path that is not an API endpoint, and by opening streams
// without reading them. Each answer is the error's code and message.
package main

import (
	"errors"
	"fmt"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		var err error
		switch r.Path() {
		case "/unbound":
			_, err = sdk.AI("OTHER").Run("m", "hi")
		case "/huge":
			_, err = sdk.AI("AI").Run("m", strings.Repeat("x", 2<<20))
		case "/nomodel":
			_, err = sdk.AI("AI").Run("", "hi")
		case "/streams":
			for i := range 20 {
				if _, err = sdk.AI("AI").ChatStream(&sdk.AIChatRequest{Model: "m", Messages: []sdk.AIMessage{{Role: "user", Content: "x"}}}); err != nil {
					err = fmt.Errorf("stream %d: %w", i, err)
					break
				}
			}
		case "/ok":
			var s string
			s, err = sdk.AI("AI").Run("m", "hi")
			if err == nil {
				w.Write([]byte(s))
				return
			}
		}
		var e *sdk.Error
		if errors.As(err, &e) {
			fmt.Fprintf(w, "%d %s", e.Code, e.Message)
			return
		}
		fmt.Fprintf(w, "other: %v", err)
	})
}

func main() {}
