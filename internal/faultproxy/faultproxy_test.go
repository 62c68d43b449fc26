package faultproxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo serves an echo server on loopback until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) (*Proxy, net.Conn) {
	t.Helper()
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return p, c
}

// roundTrip writes msg and reads it back, returning how long it took.
func roundTrip(t *testing.T, c net.Conn, msg string) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, err
	}
	buf := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.ReadFull(c, buf)
	if err == nil && string(buf) != msg {
		t.Fatalf("echoed %q, want %q", buf, msg)
	}
	return time.Since(start), err
}

func TestLatencyAndBandwidth(t *testing.T) {
	p, c := start(t)
	if d, err := roundTrip(t, c, "hello"); err != nil || d > 50*time.Millisecond {
		t.Fatalf("no fault: %v, %v", d, err)
	}
	p.SetLatency(100 * time.Millisecond)
	if d, err := roundTrip(t, c, "hello"); err != nil || d < 200*time.Millisecond || d > 400*time.Millisecond {
		t.Fatalf("latency 100ms each way: round trip %v, %v; want ~200ms", d, err)
	}
	p.SetLatency(0)
	p.SetBandwidth(10_000) // 10 kB/s each way: 5 kB takes ~0.5 s there, overlapping back
	msg := string(make([]byte, 5000))
	if d, err := roundTrip(t, c, msg); err != nil || d < 450*time.Millisecond || d > 1500*time.Millisecond {
		t.Fatalf("5 kB at 10 kB/s: %v, %v", d, err)
	}
}

func TestBlackholeHoldsWithoutClosing(t *testing.T) {
	p, c := start(t)
	p.Blackhole(true)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read through a blackhole: %v; want a timeout (no data, no FIN, no RST)", err)
	}
	if p.Links() != 1 {
		t.Fatalf("links %d", p.Links())
	}
	p.Blackhole(false)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("held byte not delivered on healing: %v", err)
	}
}

func TestResetMidFrame(t *testing.T) {
	p, c := start(t)
	p.ResetMidFrame()
	if _, err := c.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) || len(got) != 5 {
		t.Fatalf("read %q, %v; want half the chunk then ECONNRESET", got, err)
	}
}

func TestSlowClose(t *testing.T) {
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetSlowClose(300 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).CloseWrite() // the echo server closes in turn
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read: %v, want EOF", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("the close arrived after %v, want ~300ms", d)
	}
}
