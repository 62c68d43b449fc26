package auth

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Keygen is the API's "keygen" subcommand: it makes a key, prints the secret once
// (it is stored nowhere) and the entry to add to the keys file. It returns the exit
// status: 0, or 2 for bad usage.
//
//	api keygen --name ci [--models 'digits,seed*'] [--admin]
func Keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the key's name (logs, job owner, metrics label); required")
	models := fs.String("models", "*", "comma-separated globs of the models the key may call")
	admin := fs.Bool("admin", false, "the key may use the admin endpoints")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: api keygen --name NAME [--models 'digits,seed*'] [--admin]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *name == "" {
		fs.Usage()
		return 2
	}
	var globs []string
	for g := range strings.SplitSeq(*models, ",") {
		if g = strings.TrimSpace(g); g != "" {
			globs = append(globs, g)
		}
	}
	secret, e, err := NewKey(*name, globs, *admin)
	if err != nil {
		fmt.Fprintln(stderr, "keygen:", err)
		return 2
	}
	fmt.Fprintf(stdout, "# The key (shown once; give it to the caller, store it nowhere else):\n#   %s\n", secret)
	fmt.Fprintf(stdout, "# Add this entry under \"keys:\" in API_KEYS_FILE (the API re-reads it on change or SIGHUP):\n")
	fmt.Fprint(stdout, e.YAML())
	return 0
}
