package jobs

import (
	"testing"
	"time"
)

func TestNotifier(t *testing.T) {
	n := NewNotifier()
	a, cancelA := n.Subscribe("a")
	a2, cancelA2 := n.Subscribe("a")
	b, cancelB := n.Subscribe("b")
	n.Notify("a")
	n.Notify("a") // coalesced: one pending notice
	for _, ch := range []<-chan struct{}{a, a2} {
		select {
		case <-ch:
		default:
			t.Fatal("subscriber of a not notified")
		}
		select {
		case <-ch:
			t.Fatal("two notices pending")
		default:
		}
	}
	select {
	case <-b:
		t.Fatal("b notified for a")
	default:
	}
	n.NotifyAll()
	recvNotice(t, a, "notifyAll: a")
	recvNotice(t, b, "notifyAll: b")
	cancelA()
	cancelA()
	if n.Waiters("a") != 1 {
		t.Fatalf("count(a) = %d after one cancel", n.Waiters("a"))
	}
	cancelA2()
	cancelB()
	if len(n.waiters) != 0 {
		t.Fatalf("waiters left: %v", n.waiters)
	}
	n.Close()
	n.Close()
	recvNotice(t, n.done, "close: done")
}

// noticeWithin bounds how long the unit tests wait for a notice, so a lost
// one fails the test instead of hanging it.
const noticeWithin = 5 * time.Second

// recvNotice fails t unless ch delivers (or is closed) within noticeWithin.
func recvNotice(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(noticeWithin):
		t.Fatalf("%s: no notice within %v", what, noticeWithin)
	}
}
