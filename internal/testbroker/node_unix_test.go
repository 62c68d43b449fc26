//go:build unix

package testbroker

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOrphanSweep kills a test binary (a child process running
// TestOrphanChild) while its private node runs, and checks that the next
// sweep (run by every StartNode) kills the orphaned node.
func TestOrphanSweep(t *testing.T) {
	if os.Getenv("TESTBROKER_ORPHAN_CHILD") != "" {
		return // we are the child
	}
	needsBroker(t)
	out, err := runCmd(2*time.Minute, append(os.Environ(), "TESTBROKER_ORPHAN_CHILD=1"),
		os.Args[0], "-test.run=^TestOrphanChild$", "-test.v")
	var port, dir string
	for _, l := range strings.Split(out, "\n") {
		if _, v, ok := strings.Cut(l, "ORPHAN port="); ok {
			port, dir, _ = strings.Cut(v, " dir=")
		}
	}
	if port == "" {
		t.Fatalf("child did not start a node: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(dir)) }) // the child's TempDir root
	addr := net.JoinHostPort("127.0.0.1", port)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		t.Fatalf("orphaned node not running after its test binary died (%v): the test proves nothing", err)
	} else {
		c.Close()
	}
	if pids := sweepOrphans(); len(pids) == 0 {
		t.Fatal("sweepOrphans killed nothing")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("orphaned node still answers after the sweep")
		}
	}
	if pids := killMatching("-home " + filepath.Join(dir, "home")); len(pids) != 0 {
		t.Errorf("processes left after the sweep: %v", pids)
	}
}

func TestOrphanChild(t *testing.T) {
	if os.Getenv("TESTBROKER_ORPHAN_CHILD") == "" {
		return // only meaningful as TestOrphanSweep's child
	}
	n := StartNode(t)
	fmt.Printf("ORPHAN port=%d dir=%s\n", n.Port, n.Dir)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL) // die without cleanups
}
