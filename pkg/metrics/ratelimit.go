package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxLimitedCallers bounds the caller label of warren_rate_limited_total: the
// first callers limited get a series each, later ones share OtherCaller.
const MaxLimitedCallers = 100

// OtherCaller is the caller label of callers past MaxLimitedCallers.
const OtherCaller = "other"

// Limits holds the metrics of the per-caller limits (pkg/api, pkg/ratelimit).
type Limits struct {
	limited     *prometheus.CounterVec
	unavailable prometheus.Counter
	mu          sync.Mutex
	callers     map[string]bool
}

// NewLimits registers the limit metrics on reg.
func NewLimits(reg prometheus.Registerer) *Limits {
	l := &Limits{
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rate_limited_total",
			Help: "Requests answered 429, by reason (rate_limited: over the rate limit; quota_exceeded: the concurrency quota in use) and caller (the first 100 callers limited; later ones are \"other\").",
		}, []string{"reason", "caller"}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rate_limiter_unavailable_total",
			Help: "Limit decisions the limiter could not make (Redis unreachable or slow); those requests were let through.",
		}),
		callers: map[string]bool{},
	}
	for _, r := range []string{"rate_limited", "quota_exceeded"} {
		l.limited.WithLabelValues(r, OtherCaller)
	}
	reg.MustRegister(l.limited, l.unavailable)
	return l
}

// Limited counts a request refused for reason r from caller.
func (l *Limits) Limited(r, caller string) {
	l.mu.Lock()
	if !l.callers[caller] {
		if len(l.callers) >= MaxLimitedCallers {
			caller = OtherCaller
		} else {
			l.callers[caller] = true
		}
	}
	l.mu.Unlock()
	l.limited.WithLabelValues(r, caller).Inc()
}

// Unavailable counts a decision the limiter could not make.
func (l *Limits) Unavailable() { l.unavailable.Inc() }
