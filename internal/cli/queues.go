package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/queue"
)

// queuesUsage is `api queues help`.
const queuesUsage = `usage: api queues retype [--type=classic|quorum] [--wait=30s] QUEUE…

Converts sync request queues (warren.req.<model>.v<version>) to another type on a
live farm (README, "A clustered broker"): each queue is deleted once it holds no
ready message and declared again at once with the new type; the workers subscribe
to it by themselves. Calls published in the few milliseconds of the swap may be
refused (503 no_workers) or, rarely, time out at their deadline.

Set REQUEST_QUEUE_TYPE to the new type on every API and worker first: until then
they use the queue as they find it (a warning in their logs), and one that
reconnects during the swap may declare the old type again.

  --type   the type to convert to; defaults to REQUEST_QUEUE_TYPE
  --wait   how long to wait for each queue to have no ready message

The broker is AMQP_URL (its first node) with the AMQP_* TLS settings. List the
queues and their types with: rabbitmqctl list_queues -p VHOST name type
Exit 0 when every queue has the type, 1 when one could not be converted, 2 on usage.
`

// Queues is the `queues` subcommand (p.Args[0] is its name).
func Queues(p Process) int {
	fs := flag.NewFlagSet("queues", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	typ := fs.String("type", "", "")
	wait := fs.Duration("wait", 30*time.Second, "")
	usage := func(msg string) int {
		if msg != "" {
			fmt.Fprintln(p.Stderr, "api queues: "+msg)
		}
		fmt.Fprint(p.Stderr, queuesUsage)
		return ExitConfig
	}
	args := p.Args[1:]
	if len(args) > 0 && args[0] == "help" {
		fmt.Fprint(p.Stdout, queuesUsage)
		return ExitOK
	}
	if len(args) == 0 || args[0] != "retype" {
		return usage("the command is retype")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(p.Stdout, queuesUsage)
			return ExitOK
		}
		return usage(err.Error())
	}
	names := fs.Args()
	if len(names) == 0 {
		return usage("name at least one request queue")
	}
	if *wait <= 0 {
		return usage("--wait must be positive")
	}
	l, err := config.NewLoader(config.API, nil, p.Getenv)
	if err != nil {
		return usage(err.Error())
	}
	dial := LoadBroker(l)
	if err := l.Err(); err != nil {
		return usage(err.Error())
	}
	if *typ == "" {
		*typ = dial.RequestQueueType
	}
	if *typ != queue.QueueTypeClassic && *typ != queue.QueueTypeQuorum {
		return usage(fmt.Sprintf("--type %q: want classic or quorum", *typ))
	}
	dial.Name = queue.ConnectionName("retype")
	status := ExitOK
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), *wait)
		res, err := queue.RetypeRequestQueue(ctx, dial, name, *typ)
		cancel()
		switch {
		case err != nil:
			fmt.Fprintf(p.Stderr, "%s: %v\n", name, err)
			status = ExitError
		case res.Converted:
			fmt.Fprintf(p.Stdout, "%s: converted to %s (waited %s for it to have no ready message; %s without a queue)\n",
				name, *typ, res.Waited.Round(time.Millisecond), res.Gap.Round(100*time.Microsecond))
		default:
			fmt.Fprintf(p.Stdout, "%s: is %s (nothing to convert)\n", name, *typ)
		}
	}
	return status
}
