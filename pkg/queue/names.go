package queue

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Route names the queues of one model version: every model version has a sync
// request queue and a job queue of its own, so a worker consumes only the models
// it loaded, "no workers" and backlogs are per model version, and one model's
// backlog never delays another's requests.
type Route struct {
	Model   string
	Version string
}

var (
	// ModelNamePattern is what a model name must look like.
	ModelNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	versionName      = regexp.MustCompile(`^[1-9][0-9]{0,9}$`)
)

// ValidModelName reports whether name can be a model name: 1 to 64 characters of
// letters, digits, '_' and '-', starting with a letter or digit (no dots: dots
// separate the parts of queue names).
func ValidModelName(name string) bool { return ModelNamePattern.MatchString(name) }

// ValidVersion reports whether v can be a model version: a positive integer
// without leading zeros (the model repository's version directories).
func ValidVersion(v string) bool { return versionName.MatchString(v) }

// CompareVersions orders two versions numerically (as version directories are
// ordered): -1, 0 or 1.
func CompareVersions(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// Check returns an error naming what is wrong with r's model name or version.
func (r Route) Check() error {
	if !ValidModelName(r.Model) {
		return fmt.Errorf("model name %q: want 1-64 letters, digits, '_' or '-', starting with a letter or digit", r.Model)
	}
	if !ValidVersion(r.Version) {
		return fmt.Errorf("model %s: version %q: want a positive integer", r.Model, r.Version)
	}
	return nil
}

// String is "model/version".
func (r Route) String() string { return r.Model + "/" + r.Version }

// Prefix of every request queue, and the pattern the request-queue bound policy
// applies to.
const (
	RequestQueuePrefix = "warren.req."
	JobQueuePrefix     = "warren.job."
)

// RequestQueue is the route's sync request queue, "warren.req.<model>.v<version>":
// a durable classic queue with no x-arguments.
func (r Route) RequestQueue() string { return RequestQueuePrefix + r.Model + ".v" + r.Version }

// JobQueue is the route's job queue, "warren.job.<model>.v<version>": a durable
// quorum queue with a delivery limit and the shared dead-letter exchange.
func (r Route) JobQueue() string { return JobQueuePrefix + r.Model + ".v" + r.Version }

// The job path's shared queues and exchanges.
const (
	// JobResults is the quorum queue workers report job events to; the API
	// replicas consume it.
	JobResults = "warren.jobs.results"
	// JobDead is the quorum queue that receives job messages over the delivery limit
	// (or rejected as unreadable).
	JobDead = "warren.jobs.dead"
	// JobDLX is the fanout exchange every job queue dead-letters to.
	JobDLX = "warren.jobs.dlx"
	// JobCancel is the fanout exchange cancel notices are published to.
	JobCancel = "warren.jobs.cancel"
	// JobDeliveryLimit is every job queue's x-delivery-limit: the broker's own bound
	// on deliveries of one message (each nack with requeue, and each channel closed
	// with the message unacked — a crash, a drain, a consumer_timeout — counts). It
	// is fixed, never configured: redeclaring a queue with another value fails with
	// 406. Workers give up earlier, at JOB_MAX_ATTEMPTS; this is the net below them.
	JobDeliveryLimit = 20
)

// JobDelay is the fanout exchange a job retry after delay is published to (with the
// job queue's name as routing key); its one queue, [JobRetryQueue], holds the
// message for delay and dead-letters it back through the default exchange with
// that routing key, so one retry queue per delay serves every model.
func JobDelay(delay time.Duration) string {
	return "warren.jobs.delay." + strconv.FormatInt(delay.Milliseconds(), 10) + "ms"
}

// JobRetryQueue is the retry queue for delay: a classic queue whose messages
// expire after exactly delay. One queue per delay, because a TTL is applied only
// at the head of a queue: a long delay in front would hold back a shorter one.
func JobRetryQueue(delay time.Duration) string {
	return "warren.jobs.retry." + strconv.FormatInt(delay.Milliseconds(), 10) + "ms"
}

// Model announcements: workers publish what they serve on ModelsExchange; the API
// publishes on DiscoverExchange to ask every worker to announce at once.
const (
	ModelsExchange   = "warren.models"
	DiscoverExchange = "warren.models.discover"
)
