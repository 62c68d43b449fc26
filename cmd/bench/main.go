// Command bench measures warren's POST /process against a raw amqp091-go RPC
// loop through the same RabbitMQ, throughput against worker count, and the
// async job path (`make bench`); -baseline-rev and -otel add the cost of the
// observability code. See internal/bench for the method; -h lists the flags.
package main

import (
	"os"

	"github.com/warren-farm/warren/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.ResponderCommand {
		os.Exit(bench.ResponderMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr))
}
