package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/health"
)

// deadLettersUsage is `api deadletters help`.
const deadLettersUsage = `usage: api deadletters [--url=http://host:8000] COMMAND

The dead-letter admin calls (docs/jobs.md, "Dead letters") over HTTP; the API
allows them as its ADMIN_API says (loopback by default: run this on the API's host).

  list [--limit=N] [--after=TOKEN] [--all]   dead letters, oldest first (--all: every page)
  show ID                                    one dead letter with its input and earlier runs
  replay ID                                  queue it again under the same id
  discard ID                                 delete it for good

--url defaults to this host's HTTP_ADDR. With authentication on, the calls need an
admin key: --key, or the WARREN_API_KEY environment variable (a flag is visible to
other users of the host in the process list; the variable is not). The API's answer is printed on stdout
(errors on stderr); exit 0 on success, 1 when the API refused or failed, 2 on usage.
`

// DeadLetters is the `deadletters` subcommand (p.Args[0] is its name): a client
// of the API's /admin/deadletters endpoints, so that an operator needs no curl.
func DeadLetters(p Process) int {
	fs := flag.NewFlagSet("deadletters", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	base := fs.String("url", "", "")
	key := fs.String("key", "", "")
	usage := func(msg string) int {
		if msg != "" {
			fmt.Fprintln(p.Stderr, "api deadletters: "+msg)
		}
		fmt.Fprint(p.Stderr, deadLettersUsage)
		return ExitConfig
	}
	if err := fs.Parse(p.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(p.Stdout, deadLettersUsage)
			return ExitOK
		}
		return usage(err.Error())
	}
	args := fs.Args()
	if len(args) == 0 {
		return usage("a command is required")
	}
	if args[0] == "help" {
		fmt.Fprint(p.Stdout, deadLettersUsage)
		return ExitOK
	}
	if *base == "" {
		l, err := config.NewLoader(config.API, nil, p.Getenv)
		if err != nil {
			return usage(err.Error())
		}
		addr := config.HTTPAddr.Load(l)
		if err := l.Err(); err != nil {
			return usage(err.Error())
		}
		u, err := health.URL(addr, "")
		if err != nil {
			return usage(err.Error())
		}
		*base = u
	}
	*base = strings.TrimRight(*base, "/")
	if u, err := url.Parse(*base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usage(fmt.Sprintf("--url %q is not an http(s) URL", *base))
	}
	if *key == "" {
		*key = p.Getenv("WARREN_API_KEY")
	}
	c := adminClient{base: *base, key: *key, out: p.Stdout, errw: p.Stderr,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "list":
		lf := flag.NewFlagSet("list", flag.ContinueOnError)
		lf.SetOutput(io.Discard)
		limit := lf.Int("limit", 100, "")
		after := lf.String("after", "", "")
		all := lf.Bool("all", false, "")
		if err := lf.Parse(rest); err != nil || lf.NArg() > 0 {
			return usage("list takes --limit, --after and --all only")
		}
		return c.list(*limit, *after, *all)
	case "show", "replay", "discard":
		if len(rest) != 1 || rest[0] == "" || strings.ContainsAny(rest[0], "/?#") {
			return usage(cmd + " takes one job id")
		}
		id := url.PathEscape(rest[0])
		switch cmd {
		case "show":
			return c.do(http.MethodGet, "/admin/deadletters/"+id, nil)
		case "replay":
			return c.do(http.MethodPost, "/admin/deadletters/"+id+"/replay", nil)
		default:
			return c.do(http.MethodDelete, "/admin/deadletters/"+id, nil)
		}
	}
	return usage(fmt.Sprintf("unknown command %q", args[0]))
}

type adminClient struct {
	base, key string
	out, errw io.Writer
	http      *http.Client
}

// do calls the API and prints its answer; into, if set, also receives it.
func (c adminClient) do(method, path string, into any) int {
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, nil)
	if err != nil {
		fmt.Fprintln(c.errw, "api deadletters:", err)
		return ExitError
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		fmt.Fprintln(c.errw, "api deadletters:", err)
		return ExitError
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		fmt.Fprintln(c.errw, "api deadletters: reading the answer:", err)
		return ExitError
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(body)
	}
	pretty.WriteByte('\n')
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(c.errw, "api deadletters: %s %s: %s\n%s", method, path, resp.Status, pretty.Bytes())
		return ExitError
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			fmt.Fprintln(c.errw, "api deadletters: the answer is not a page of dead letters:", err)
			return ExitError
		}
		return ExitOK
	}
	_, _ = c.out.Write(pretty.Bytes())
	return ExitOK
}

// list prints one page, or with all every page's dead letters as one JSON array.
func (c adminClient) list(limit int, after string, all bool) int {
	if !all {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if after != "" {
			q.Set("after", after)
		}
		return c.do(http.MethodGet, "/admin/deadletters?"+q.Encode(), nil)
	}
	var every []json.RawMessage
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if after != "" {
			q.Set("after", after)
		}
		var page struct {
			DeadLetters []json.RawMessage `json:"dead_letters"`
			Next        string            `json:"next"`
		}
		if code := c.do(http.MethodGet, "/admin/deadletters?"+q.Encode(), &page); code != ExitOK {
			return code
		}
		every = append(every, page.DeadLetters...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if every == nil {
		every = []json.RawMessage{}
	}
	b, _ := json.MarshalIndent(every, "", "  ")
	fmt.Fprintf(c.out, "%s\n", b)
	return ExitOK
}
