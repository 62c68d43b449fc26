package bench

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// SysInfo describes the machine and software of a run.
type SysInfo struct {
	Date            time.Time
	CPUModel        string
	Cores           int
	GOMAXPROCS      int
	Kernel          string
	GoVersion       string
	AMQPClient      string
	RabbitMQVersion string
	ErlangVersion   string
	// BackgroundLoad is the machine's busy cores over a second before the
	// benchmark starts (-1 if unknown).
	BackgroundLoad float64
}

// CollectSysInfo gathers SysInfo; m may be nil.
func CollectSysInfo(ctx context.Context, m *Mgmt) SysInfo {
	si := SysInfo{
		Date:       time.Now(),
		CPUModel:   cpuModel(),
		Cores:      numCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		AMQPClient: "github.com/rabbitmq/amqp091-go",
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		si.Kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	} else {
		si.Kernel = runtime.GOOS
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/rabbitmq/amqp091-go" {
				si.AMQPClient += " " + d.Version
			}
		}
	}
	si.BackgroundLoad = -1
	if b1, _, t1, ok := machineTicks(); ok {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		if b2, _, t2, ok := machineTicks(); ok && t2 > t1 {
			si.BackgroundLoad = float64(b2-b1) / float64(t2-t1) * float64(si.Cores)
		}
	}
	if m != nil {
		if o, err := m.Overview(ctx); err == nil {
			si.RabbitMQVersion, si.ErlangVersion = o.RabbitMQVersion, o.ErlangVersion
		}
	}
	return si
}

func numCPU() int { return runtime.NumCPU() }

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
