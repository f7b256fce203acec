package lb_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/verge-edge/verge/lb"
)

func Example() {
	bal, err := lb.New(lb.Options{
		Backends: []lb.BackendConfig{
			{Address: "10.0.0.1:8080", Weight: 3},
			{Address: "10.0.0.2:8080"},
		},
		Selector: &lb.WeightedRoundRobin{},
		Passive:  lb.PassiveHealth{MaxFails: 3, Cooldown: 30 * time.Second},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bal.Close()

	for range 4 {
		b := bal.Select(nil)
		if b == nil {
			fmt.Println("503: no upstream")
			return
		}
		fmt.Println(b.Peer.Address)
		var exchangeErr error // the result of talking to b.Peer
		bal.Report(b, exchangeErr)
	}
	// A connect failure counts towards ejection.
	b := bal.Select(nil)
	bal.Report(b, errors.New("connection refused"))
	fmt.Println(b.Status().ConsecutiveFails)
	// Output:
	// 10.0.0.1:8080
	// 10.0.0.1:8080
	// 10.0.0.2:8080
	// 10.0.0.1:8080
	// 1
}
