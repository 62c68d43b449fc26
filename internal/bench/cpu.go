package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux everywhere).
const clockTicks = 100

// CPUUsage is the CPU used during a measured window.
type CPUUsage struct {
	// Cores maps a process group ("bench", "api", "workers", "broker", ...)
	// to the cores it kept busy on average (1.0 = one core all the time).
	Cores map[string]float64
	// Machine is the busy cores of the whole machine (from /proc/stat).
	Machine float64
	// IRQ is the part of Machine spent in interrupts and softirqs, which
	// /proc charges to no process (loopback TCP is mostly softirq work).
	IRQ float64
	// Window is the sampled interval.
	Window time.Duration
}

// Other is the busy cores not charged to a sampled group nor to interrupts:
// other processes on the machine (idle farms, other users' jobs).
func (u *CPUUsage) Other() float64 {
	known := u.IRQ
	for _, x := range u.Cores {
		known += x
	}
	return max(0, u.Machine-known)
}

// CPUSampler samples /proc for groups of processes at the start and end of a
// window. Processes that are gone are skipped. On systems without /proc the
// usage is empty.
type CPUSampler struct {
	groups map[string]func() []int

	mu    sync.Mutex
	start cpuSnap
}

type cpuSnap struct {
	at      time.Time
	ticks   map[string]uint64
	busy    uint64
	irq     uint64
	total   uint64
	present bool
}

// NewCPUSampler samples the given groups, each a function returning the
// group's current pids.
func NewCPUSampler(groups map[string]func() []int) *CPUSampler {
	return &CPUSampler{groups: groups}
}

func (s *CPUSampler) snap() cpuSnap {
	sn := cpuSnap{at: time.Now(), ticks: map[string]uint64{}}
	for name, pids := range s.groups {
		var sum uint64
		for _, pid := range pids() {
			if t, ok := procTicks(pid); ok {
				sum += t
			}
		}
		sn.ticks[name] = sum
	}
	sn.busy, sn.irq, sn.total, sn.present = machineTicks()
	return sn
}

// Start records the window's opening sample.
func (s *CPUSampler) Start() {
	sn := s.snap()
	s.mu.Lock()
	s.start = sn
	s.mu.Unlock()
}

// Stop takes the closing sample and returns the usage since Start.
func (s *CPUSampler) Stop() *CPUUsage {
	end := s.snap()
	s.mu.Lock()
	start := s.start
	s.mu.Unlock()
	win := end.at.Sub(start.at)
	u := &CPUUsage{Cores: map[string]float64{}, Window: win}
	if win <= 0 {
		return u
	}
	secs := win.Seconds()
	for name, t := range end.ticks {
		if t >= start.ticks[name] {
			u.Cores[name] = float64(t-start.ticks[name]) / clockTicks / secs
		}
	}
	if start.present && end.present && end.total > start.total {
		frac := float64(end.busy-start.busy) / float64(end.total-start.total)
		u.Machine = frac * float64(numCPU())
		u.IRQ = float64(end.irq-start.irq) / float64(end.total-start.total) * float64(numCPU())
	}
	return u
}

// procTicks returns utime+stime of pid from /proc/<pid>/stat.
func procTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name is in parentheses and may hold spaces: split after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return ut + st, true
}

// machineTicks returns busy, interrupt (irq + softirq) and total ticks of
// all CPUs from /proc/stat. Steal time counts as busy.
func machineTicks() (busy, irq, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, 0, false
	}
	var idle uint64
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		total += v
		switch i {
		case 3, 4: // idle, iowait
			idle += v
		case 5, 6: // irq, softirq
			irq += v
		}
	}
	return total - idle, irq, total, true
}

// findPids returns the pids whose /proc/<pid>/comm equals comm.
func findPids(comm string) []int {
	ents, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(e))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// listenerPids returns the pids holding a TCP socket listening on port (from
// /proc/net/tcp{,6} and the processes' fds). It needs permission to read
// other processes' fds; it returns nil when it finds nothing.
func listenerPids(port int) []int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[int]bool{}
	var pids []int
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !inodes[target] {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(fd))))
		if err == nil && !seen[pid] {
			seen[pid] = true
			pids = append(pids, pid)
		}
	}
	return pids
}

// brokerPids finds the broker's processes: the listener of port, else the
// longest-running beam.smp (short-lived ones are rabbitmqctl and friends).
func brokerPids(port int) []int {
	if pids := listenerPids(port); len(pids) > 0 {
		return pids
	}
	var best int
	var bestStart uint64
	for _, pid := range findPids("beam.smp") {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 20 {
			continue
		}
		start, err := strconv.ParseUint(f[19], 10, 64) // field 22: starttime
		if err == nil && (best == 0 || start < bestStart) {
			best, bestStart = pid, start
		}
	}
	if best == 0 {
		return nil
	}
	return []int{best}
}
