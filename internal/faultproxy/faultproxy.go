// Package faultproxy is a fault-injecting TCP proxy for tests: put it between
// the farm and the broker on loopback and make the network slow, narrow,
// silent or abrupt while real traffic flows — added latency, a bandwidth
// limit, a half-open cut (a blackhole: nothing delivered, no FIN, no RST),
// resets in the middle of a frame, and closes that reach the other side late.
//
// Every fault applies to the connections open now and to new ones, until it is
// turned off. A Proxy owns its goroutines; Close stops them all.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection accepted on its loopback listener to the
// target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	latency   time.Duration
	bps       int           // bytes per second per direction; 0: unlimited
	blackhole bool          // hold every byte; keep the sockets open
	healed    chan struct{} // closed when the blackhole ends
	slowClose time.Duration // delay before a close reaches the other side
	resetNext bool          // the next chunk towards the client is cut in half, then both sides reset
	links     map[*link]struct{}
	closed    bool

	wg sync.WaitGroup
}

// Start listens on 127.0.0.1 (a free port) and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}, healed: make(chan struct{})}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk by d in each direction (0: none); a round trip
// gains 2d.
func (p *Proxy) SetLatency(d time.Duration) { p.mu.Lock(); p.latency = d; p.mu.Unlock() }

// SetBandwidth limits each direction of each connection to bytesPerSec
// (0: unlimited).
func (p *Proxy) SetBandwidth(bytesPerSec int) { p.mu.Lock(); p.bps = bytesPerSec; p.mu.Unlock() }

// SetSlowClose delays by d the close of one side reaching the other (0: at once).
func (p *Proxy) SetSlowClose(d time.Duration) { p.mu.Lock(); p.slowClose = d; p.mu.Unlock() }

// Blackhole cuts (on) or heals (off) every connection the way a dead link or a
// silently dropping firewall does: the sockets stay open, nothing is delivered
// either way, nobody gets a FIN or a RST. Held bytes are delivered on healing
// (to whoever still listens). New connections are accepted and held too.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && !p.blackhole:
		p.healed = make(chan struct{})
	case !on && p.blackhole:
		close(p.healed)
	}
	p.blackhole = on
}

// ResetMidFrame makes the next chunk the broker sends (on any connection) reach
// the client cut in half, then resets that connection on both sides (RST); every
// other open connection is reset at once too.
func (p *Proxy) ResetMidFrame() {
	p.mu.Lock()
	p.resetNext = true
	p.mu.Unlock()
}

// Links is the number of connections open through the proxy.
func (p *Proxy) Links() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.links) }

// Close stops accepting, closes every connection and waits for the goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.blackhole {
		close(p.healed)
		p.blackhole = false
	}
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c.(*net.TCPConn), server: s.(*net.TCPConn), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close(false)
			return
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, l.client, l.server, false)
		go p.pipe(l, l.server, l.client, true)
	}
}

// link is one proxied connection.
type link struct {
	client, server *net.TCPConn
	once           sync.Once
	done           chan struct{}
}

// close closes both sides: with rst, abortively (SO_LINGER 0: a RST).
func (l *link) close(rst bool) {
	l.once.Do(func() {
		close(l.done)
		if rst {
			_ = l.client.SetLinger(0)
			_ = l.server.SetLinger(0)
		}
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst through the faults; toClient is the broker → client
// direction.
func (p *Proxy) pipe(l *link, src, dst *net.TCPConn, toClient bool) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	q := make(chan chunk, 64)
	p.wg.Add(1)
	go func() { // the reader: stamps chunks; ends with src (closed by l.close)
		defer p.wg.Done()
		defer close(q)
		for {
			buf := make([]byte, 16<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case q <- chunk{buf[:n], time.Now()}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		for len(c.b) > 0 {
			p.mu.Lock()
			lat, bps, healed, reset := p.latency, p.bps, p.healed, toClient && p.resetNext
			if reset {
				p.resetNext = false
			}
			p.mu.Unlock()
			select { // a blackhole holds everything until it heals
			case <-healed:
			case <-l.done:
				return
			}
			if !sleepUntil(c.at.Add(lat), l.done) {
				return
			}
			if reset {
				_, _ = dst.Write(c.b[:(len(c.b)+1)/2])
				p.resetAll(l)
				return
			}
			n := len(c.b)
			if bps > 0 {
				n = min(n, max(bps/50, 1)) // 20 ms worth at a time
			}
			start := time.Now()
			if _, err := dst.Write(c.b[:n]); err != nil {
				l.close(false)
				return
			}
			c.b = c.b[n:]
			if bps > 0 && !sleepUntil(start.Add(time.Duration(n)*time.Second/time.Duration(bps)), l.done) {
				return
			}
		}
	}
	// src ended (EOF or error): the close reaches the other side, late if asked.
	p.mu.Lock()
	d := p.slowClose
	p.mu.Unlock()
	if sleepUntil(time.Now().Add(d), l.done) {
		l.close(false)
	}
}

// resetAll resets every open connection (first the one cut mid-frame).
func (p *Proxy) resetAll(first *link) {
	first.close(true)
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close(true)
	}
}

// sleepUntil waits until t or done; false if done came first.
func sleepUntil(t time.Time, done <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-done:
		return false
	}
}
