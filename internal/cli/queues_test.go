package cli

import (
	"bytes"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/internal/testbroker"
)

func TestQueuesUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"queues"}, ExitConfig, "the command is retype"},
		{[]string{"queues", "help"}, ExitOK, "--type"},
		{[]string{"queues", "retype", "--help"}, ExitOK, "--type"},
		{[]string{"queues", "frobnicate"}, ExitConfig, "the command is retype"},
		{[]string{"queues", "retype"}, ExitConfig, "name at least one request queue"},
		{[]string{"queues", "retype", "--type=stream", "warren.req.a.v1"}, ExitConfig, `--type "stream"`},
		{[]string{"queues", "retype", "--wait=0s", "warren.req.a.v1"}, ExitConfig, "--wait must be positive"},
	} {
		var out, errb bytes.Buffer
		code := Queues(Process{Args: tc.args, Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errb})
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.want, out.String(), errb.String())
		}
	}
}

// `api queues retype` converts a classic request queue to the type
// REQUEST_QUEUE_TYPE names, says so, and refuses a queue that is not a request
// queue.
func TestQueuesRetype(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ; run without -short (make test)")
	}
	vh := testbroker.NewVhost(t)
	conn, err := amqp.Dial(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("warren.req.m.v1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AMQP_URL": vh.AMQPURL, "REQUEST_QUEUE_TYPE": "quorum"}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Queues(Process{Args: append([]string{"queues", "retype"}, args...), Getenv: func(k string) string { return env[k] },
			Stdout: &out, Stderr: &errb})
		return code, out.String() + errb.String()
	}
	if code, out := run("warren.req.m.v1"); code != ExitOK || !strings.Contains(out, "warren.req.m.v1: converted to quorum") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if qi, ok := vh.Queue(t, "warren.req.m.v1"); !ok || qi.Arguments["x-queue-type"] != "quorum" {
		t.Fatalf("queue after retype: %+v %v", qi, ok)
	}
	if code, out := run("warren.req.m.v1"); code != ExitOK || !strings.Contains(out, "is quorum (nothing to convert)") {
		t.Errorf("second run: exit %d: %s", code, out)
	}
	if code, out := run("--type=classic", "warren.req.m.v1", "orders"); code != ExitError ||
		!strings.Contains(out, "converted to classic") || !strings.Contains(out, `"orders" is not a request queue`) {
		t.Errorf("back to classic, and a bad name: exit %d: %s", code, out)
	}
}
