package queue

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/internal/testbroker"
)

func TestRotationRoundRobinFromTheStart(t *testing.T) {
	r := newRotation([]string{"a", "b", "c"}, func(n int) int {
		if n != 3 {
			t.Errorf("start picked among %d, want 3", n)
		}
		return 1
	})
	var seen []string
	var rounds []bool
	for i := 0; i < 6; i++ {
		u, _ := r.current()
		seen = append(seen, u)
		rounds = append(rounds, r.failed())
	}
	if got := strings.Join(seen, ""); got != "bcabca" {
		t.Errorf("dial order %q, want bcabca", got)
	}
	if fmt.Sprint(rounds) != "[false false true false false true]" {
		t.Errorf("full rounds %v: the backoff must come after every 3rd failure only", rounds)
	}
	// A connect resets the round: two more failures are not a full round.
	r.failed()
	r.connected()
	first := r.failed()
	second := r.failed()
	if first || second {
		t.Error("a full round reported 2 failures after a connect")
	}
	if !r.failed() {
		t.Error("no full round after 3 failures")
	}

	one := newRotation([]string{"only"}, func(int) int { return 0 })
	if !one.failed() {
		t.Error("one address: every failure is a full round")
	}
}

func TestParseURLs(t *testing.T) {
	good := "amqp://u:p@a:5672/v, amqp://u:p@b:5673/v,amqp://u:p@c/v"
	us, err := ParseURLs(good)
	if err != nil || len(us) != 3 || us[1].Host != "b" || us[1].Port != 5673 || us[2].Vhost != "v" {
		t.Fatalf("ParseURLs(%q) = %+v, %v", good, us, err)
	}
	if v, err := Vhost(good); err != nil || v != "v" {
		t.Errorf("Vhost = %q, %v", v, err)
	}
	for _, c := range []struct{ in, want string }{
		{"amqp://u:p@a/v,", "URL 2 of 2 is empty"},
		{"amqp://u:p@a/v,http://u:secret@b/v", "URL 2 of 2 (http://…@b/v)"},
		{"amqp://u:p@a/v,amqp://u:p@b/w", `URL 2 of 2 (b) names vhost "w"`},
		{"amqp://u:p@a/v,amqp://u:q@b/v", "URL 2 of 2 (b) has other credentials"},
		{"amqp://u:p@a/v,amqps://u:p@b/v", "URL 2 of 2 (b) is amqps://"},
		{"ftp://x", "the URL (ftp://x)"},
	} {
		_, err := ParseURLs(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURLs(%q) = %v, want an error with %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error repeats a password: %v", err)
		}
	}
	if err := (&DialConfig{URL: "amqp://u:p@a/v,amqp://u:p@b/w"}).validate(); err == nil || !strings.Contains(err.Error(), "URL 2 of 2") {
		t.Errorf("validate = %v, want the bad URL named", err)
	}
}

// TestDeadAddressFirstStillConnects dials a list whose first address (where
// the rotation starts) refuses connections: the loop goes on to the live
// one without waiting for a backoff.
func TestDeadAddressFirstStillConnects(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ; run without -short (make test)")
	}
	vh := testbroker.NewVhost(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().(*net.TCPAddr).Port
	l.Close()
	u, err := amqp.ParseURI(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host, u.Port = "127.0.0.1", dead
	cfg := DialConfig{URL: u.String() + "," + vh.AMQPURL, startAt: func(int) int { return 0 },
		MinBackoff: 5 * time.Second, MaxBackoff: 5 * time.Second}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	cfg.setDefaults("test")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	var remote string
	runSessions(ctx, &cfg, func(ctx context.Context, conn *amqp.Connection, gen uint64) error {
		remote = conn.RemoteAddr().String()
		cancel()
		return conn.Close()
	})
	if remote == "" {
		t.Fatal("never connected")
	}
	if _, port, _ := net.SplitHostPort(remote); port == fmt.Sprint(dead) {
		t.Fatalf("connected to the dead address %s?", remote)
	}
	if d := time.Since(began); d > 4*time.Second {
		t.Errorf("connected after %v: the dead address cost a backoff (5s) instead of moving on", d)
	}
}
