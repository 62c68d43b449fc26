package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/warren-farm/warren/pkg/config"
)

// Usage writes the binary's help: the summary, the subcommands, and its variables
// with their defaults.
func (c Command[C]) Usage(w io.Writer) {
	n := c.Name
	fmt.Fprintf(w, "%s: %s\n\nUsage:\n", n, c.Summary)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "  %s [--flag=value ...]\trun; a flag beats its environment variable, which beats the default\n", n)
	fmt.Fprintf(tw, "  %s config [--all]\tprint this binary's variables as a Markdown table (--all: every binary's)\n", n)
	fmt.Fprintf(tw, "  %s healthcheck [/ready|/health]\tprobe the running process on HTTP_ADDR: exit 0 healthy, 1 not\n", n)
	for _, sc := range c.Subcommands {
		fmt.Fprintf(tw, "  %s %s %s\t%s\n", n, sc.Name, sc.Args, sc.Usage)
	}
	fmt.Fprintf(tw, "  %s help\tprint this help\n", n)
	_ = tw.Flush()

	fmt.Fprintf(w, "\nVariables (the flag of AMQP_URL is --amqp-url, and so on; `%s config` says what each means):\n", n)
	tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, v := range config.For(n) {
		d := v.Default(n)
		if d == "" {
			d = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", v.Env, d)
	}
	_ = tw.Flush()
}
