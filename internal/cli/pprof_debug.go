//go:build pprof

package cli

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

// Investigation builds only (go build -tags pprof): net/http/pprof on a free loopback
// port, written to $PPROF_PORTS_DIR/<pid>.
func init() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	if d := os.Getenv("PPROF_PORTS_DIR"); d != "" {
		_ = os.WriteFile(fmt.Sprintf("%s/%d", d, os.Getpid()), []byte(ln.Addr().String()), 0o644)
	}
	go func() { _ = http.Serve(ln, nil) }()
}
