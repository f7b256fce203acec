package observe_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/verge-edge/verge/observe"
)

func ExampleAccessLog() {
	alog, err := observe.NewAccessLog(observe.AccessLogConfig{
		Writer: os.Stdout,
		Fields: []string{"remote_addr", "method", "path", "status", "duration", "error"},
	})
	if err != nil {
		panic(err)
	}
	defer alog.Close()
	alog.Log(&observe.Record{
		RemoteAddr: netip.MustParseAddrPort("192.0.2.7:51234"),
		Method:     "GET",
		Path:       `/say/"hi"`,
		Status:     502,
		Duration:   1500 * time.Microsecond,
		Error:      errors.New("connect refused"),
	})
	// Output:
	// {"remote_addr":"192.0.2.7:51234","method":"GET","path":"/say/\"hi\"","status":502,"duration":0.001500,"error":"connect refused"}
}

func ExampleMetrics() {
	m := observe.NewMetrics()
	m.ConnHook("HTTP/1.1", 1)
	m.ObserveRequest("api", "HTTP/1.1", 200, 12*time.Millisecond)
	m.ObserveRequest("api", "HTTP/1.1", 503, 40*time.Millisecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "verge_requests_total") || strings.HasPrefix(line, "verge_active_connections") {
			fmt.Println(line)
		}
	}
	// Output:
	// verge_active_connections{proto="HTTP/1.1"} 1
	// verge_requests_total{code_class="2xx",proto="HTTP/1.1",route="api"} 1
	// verge_requests_total{code_class="5xx",proto="HTTP/1.1",route="api"} 1
}
