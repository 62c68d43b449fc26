package capacity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warren-farm/warren/pkg/queue"
)

// ErrQueueNotFound is a route's [Snapshot].Error when the management API's list
// of queues does not hold the route's request queue: it has not been declared
// yet, or was deleted. The route then counts as empty.
var ErrQueueNotFound = errors.New("capacity: request queue not found")

// ErrNoStatistics is a route's [Snapshot].Error when its request queue exists but
// the management API has not collected its statistics yet (for up to 5s after it
// was declared). The route's last values are kept.
var ErrNoStatistics = errors.New("capacity: no statistics for the request queue yet")

// ErrVhostNotFound is returned by [Farm.Refresh] when the management API does not
// know the vhost (404). Every route then counts as empty.
var ErrVhostNotFound = errors.New("capacity: vhost not found")

// errTooLarge is returned by a read whose answer exceeds managementResponseMaxSize.
var errTooLarge = fmt.Errorf("answer larger than %d MiB", managementResponseMaxSize>>20)

// managementResponseMaxSize caps the answer to GET /api/queues/{vhost}. With the
// columns filter one queue takes about 200 bytes, so the cap holds some 80,000
// queues of every kind in the vhost (request, job, retry, reply queues and any
// others). The answer is decoded as it streams in and only the request queues
// are kept, so the cap bounds the time spent on an answer, not memory. An answer
// over the cap is a failed read (the routes keep their last values, stale).
const managementResponseMaxSize = 16 << 20

// queueColumns are the fields the formula needs, the only ones asked for. The
// management API honours columns for the nested message_stats fields too.
const queueColumns = "name,messages_ready,messages_unacknowledged,consumers," +
	"message_stats.publish_details.avg_rate,message_stats.publish_details.rate"

// queueStats is what one read says about one queue.
type queueStats struct {
	publishRate float64
	ready       int
	unacked     int
	consumers   int
}

// queueEntry is one request queue in a read; hasStats is false while the
// statistics collector has not seen the queue yet (the entry has a name only).
type queueEntry struct {
	stats    queueStats
	hasStats bool
}

// managementAPI reads every queue of one vhost in one request.
type managementAPI struct {
	endpoint string // full URL without credentials, query included
	user     *url.Userinfo
	client   *http.Client
}

// newManagementAPI builds the reader for GET /api/queues/{vhost}, asking for the
// publish rate averaged over window (msg_rates_age) and only the fields the
// formula uses (columns). It does not use the server's name filter: that works
// only with pagination, at most 500 queues a page, which would take several
// requests per read for a large farm; request queues are picked out of the
// answer instead.
func newManagementAPI(base, vhost string, window time.Duration, client *http.Client) (*managementAPI, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("capacity: management URL %q: not an http(s) URL", redactURL(base))
	}
	user := u.User
	u.User = nil
	age := int64(math.Ceil(window.Seconds()))
	incr := max((age+11)/12, 1) // about a dozen samples over the window
	q := url.Values{}
	q.Set("columns", queueColumns)
	q.Set("msg_rates_age", strconv.FormatInt(age, 10))
	q.Set("msg_rates_incr", strconv.FormatInt(incr, 10))
	endpoint := u.String() + "/api/queues/" + url.PathEscape(vhost) + "?" + q.Encode()
	return &managementAPI{endpoint: endpoint, user: user, client: client}, nil
}

// read performs one GET and returns the vhost's request queues by name. It
// returns ErrVhostNotFound for a 404.
func (m *managementAPI) read(ctx context.Context) (map[string]queueEntry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.endpoint, nil)
	if err != nil {
		return nil, err
	}
	if m.user != nil {
		pw, _ := m.user.Password()
		req.SetBasicAuth(m.user.Username(), pw)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("management API: %w", err)
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	body := &capReader{r: resp.Body, n: managementResponseMaxSize}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, ErrVhostNotFound
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(body, 512))
		return nil, fmt.Errorf("management API: GET queues: %s: %s", resp.Status, truncate(msg))
	}
	queues, err := parseQueues(body)
	if err != nil {
		return nil, fmt.Errorf("management API: decoding the queues: %w", err)
	}
	return queues, nil
}

// listedQueue is one element of GET /api/queues/{vhost} as filtered by columns.
type listedQueue struct {
	Name         string `json:"name"`
	Ready        *int   `json:"messages_ready"`
	Unacked      *int   `json:"messages_unacknowledged"`
	Consumers    *int   `json:"consumers"`
	MessageStats struct {
		PublishDetails struct {
			AvgRate *float64 `json:"avg_rate"`
			Rate    *float64 `json:"rate"`
		} `json:"publish_details"`
	} `json:"message_stats"`
}

// parseQueues decodes the JSON array of queues as it streams and keeps those
// whose name starts with queue.RequestQueuePrefix. A queue the statistics
// collector has not seen yet comes with its name only; message_stats is absent
// until the first publish.
func parseQueues(r io.Reader) (map[string]queueEntry, error) {
	dec := json.NewDecoder(r)
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if tok != json.Delim('[') {
		return nil, fmt.Errorf("want a JSON array, got %v", tok)
	}
	queues := make(map[string]queueEntry)
	for dec.More() {
		var q listedQueue
		if err := dec.Decode(&q); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(q.Name, queue.RequestQueuePrefix) {
			continue
		}
		queues[q.Name] = q.entry()
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, err
	}
	return queues, nil
}

func (q *listedQueue) entry() queueEntry {
	if q.Ready == nil {
		return queueEntry{}
	}
	s := queueStats{ready: max(*q.Ready, 0)}
	if q.Unacked != nil {
		s.unacked = max(*q.Unacked, 0)
	}
	if q.Consumers != nil {
		s.consumers = max(*q.Consumers, 0)
	}
	switch pd := q.MessageStats.PublishDetails; {
	case pd.AvgRate != nil:
		s.publishRate = *pd.AvgRate
	case pd.Rate != nil:
		s.publishRate = *pd.Rate
	}
	if math.IsNaN(s.publishRate) || math.IsInf(s.publishRate, 0) || s.publishRate < 0 {
		s.publishRate = 0
	}
	return queueEntry{stats: s, hasStats: true}
}

// capReader reads at most n bytes from r and then fails with errTooLarge, so an
// oversized answer is an error rather than a truncated document.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var one [1]byte
		if n, err := c.r.Read(one[:]); n == 0 {
			return 0, err // io.EOF: the answer ended exactly at the cap
		}
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
