package cli

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestDeadLettersUsage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() // nobody answers once closed
	ln.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deadletters"}, ExitConfig, "a command is required"},
		{[]string{"deadletters", "help"}, ExitOK, "replay ID"},
		{[]string{"deadletters", "--help"}, ExitOK, "replay ID"},
		{[]string{"deadletters", "frobnicate"}, ExitConfig, `unknown command "frobnicate"`},
		{[]string{"deadletters", "show"}, ExitConfig, "show takes one job id"},
		{[]string{"deadletters", "replay", "a", "b"}, ExitConfig, "replay takes one job id"},
		{[]string{"deadletters", "discard", "../x"}, ExitConfig, "discard takes one job id"},
		{[]string{"deadletters", "list", "--limit=x"}, ExitConfig, "list takes"},
		{[]string{"deadletters", "--url=ftp://x", "list"}, ExitConfig, "is not an http(s) URL"},
		{[]string{"deadletters", "--url=" + dead, "list"}, ExitError, "connection refused"},
	} {
		var out, errb bytes.Buffer
		code := DeadLetters(Process{Args: tc.args, Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errb})
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.want, out.String(), errb.String())
		}
	}
}
