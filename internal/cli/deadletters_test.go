package cli

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
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

// TestDeadLettersSendsTheKey: the admin key goes as a Bearer credential, from
// --key or else WARREN_API_KEY; without either, no Authorization header.
func TestDeadLettersSendsTheKey(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"j1"}`))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"deadletters", "--url=" + srv.URL, "--key=wrn_flag", "show", "j1"}, "wrn_env", "Bearer wrn_flag"},
		{[]string{"deadletters", "--url=" + srv.URL, "show", "j1"}, "wrn_env", "Bearer wrn_env"},
		{[]string{"deadletters", "--url=" + srv.URL, "show", "j1"}, "", ""},
	} {
		var out, errb bytes.Buffer
		env := func(k string) string {
			if k == "WARREN_API_KEY" {
				return tc.env
			}
			return ""
		}
		if code := DeadLetters(Process{Args: tc.args, Getenv: env, Stdout: &out, Stderr: &errb}); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errb.String())
		}
		if h := <-got; h != tc.want {
			t.Errorf("%v (WARREN_API_KEY=%q): Authorization %q, want %q", tc.args, tc.env, h, tc.want)
		}
	}
}
