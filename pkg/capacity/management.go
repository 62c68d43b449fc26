package capacity

import (
	"bytes"
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
)

// ErrQueueNotFound is returned by [Estimator.Refresh] when the management API
// does not know the queue (404): it has not been declared yet, or was deleted.
// The estimator then counts the queue as empty.
var ErrQueueNotFound = errors.New("capacity: request queue not found")

// ErrNoStatistics is returned by [Estimator.Refresh] when the queue exists but
// the management API has not collected its statistics yet (for up to 5s after
// it was declared). The last values read are kept.
var ErrNoStatistics = errors.New("capacity: no statistics for the request queue yet")

// queueStats is what one management API read yields.
type queueStats struct {
	publishRate float64
	ready       int
	unacked     int
	consumers   int
}

// managementAPI reads one queue's statistics.
type managementAPI struct {
	endpoint string // full URL without credentials, query included
	user     *url.Userinfo
	client   *http.Client
}

// newManagementAPI builds the reader for GET /api/queues/{vhost}/{queue}, asking
// for the publish rate averaged over window (msg_rates_age) and only the fields
// it uses (columns).
func newManagementAPI(base, vhost, queue string, window time.Duration, client *http.Client) (*managementAPI, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("capacity: management URL %q: not an http(s) URL", redactURL(base))
	}
	user := u.User
	u.User = nil
	age := int64(math.Ceil(window.Seconds()))
	incr := max((age+11)/12, 1) // about a dozen samples over the window
	q := url.Values{}
	q.Set("columns", "messages_ready,messages_unacknowledged,consumers,"+
		"message_stats.publish_details.avg_rate,message_stats.publish_details.rate")
	q.Set("msg_rates_age", strconv.FormatInt(age, 10))
	q.Set("msg_rates_incr", strconv.FormatInt(incr, 10))
	endpoint := u.String() + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(queue) + "?" + q.Encode()
	return &managementAPI{endpoint: endpoint, user: user, client: client}, nil
}

// read performs one GET. It returns ErrQueueNotFound for a 404 and
// ErrNoStatistics while the broker has no counters for the queue yet.
func (m *managementAPI) read(ctx context.Context) (queueStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.endpoint, nil)
	if err != nil {
		return queueStats{}, err
	}
	if m.user != nil {
		pw, _ := m.user.Password()
		req.SetBasicAuth(m.user.Username(), pw)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return queueStats{}, fmt.Errorf("management API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, managementResponseMaxSize))
	if err != nil {
		return queueStats{}, fmt.Errorf("management API: reading the answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return queueStats{}, ErrQueueNotFound
	case resp.StatusCode != http.StatusOK:
		return queueStats{}, fmt.Errorf("management API: GET queue: %s: %s", resp.Status, truncate(body))
	}
	return parseQueue(body)
}

// parseQueue decodes GET /api/queues/{vhost}/{queue} as filtered by columns. A
// queue the statistics collector has not seen yet comes without counters (and,
// filtered, as "[]"); message_stats is absent until the first publish.
func parseQueue(body []byte) (queueStats, error) {
	body = bytes.TrimSpace(body)
	if bytes.HasPrefix(body, []byte("[")) {
		return queueStats{}, ErrNoStatistics
	}
	var q struct {
		Ready        *int `json:"messages_ready"`
		Unacked      *int `json:"messages_unacknowledged"`
		Consumers    *int `json:"consumers"`
		MessageStats struct {
			PublishDetails struct {
				AvgRate *float64 `json:"avg_rate"`
				Rate    *float64 `json:"rate"`
			} `json:"publish_details"`
		} `json:"message_stats"`
	}
	if err := json.Unmarshal(body, &q); err != nil {
		return queueStats{}, fmt.Errorf("management API: decoding the queue: %w", err)
	}
	if q.Ready == nil {
		return queueStats{}, ErrNoStatistics
	}
	s := queueStats{ready: *q.Ready}
	if q.Unacked != nil {
		s.unacked = *q.Unacked
	}
	if q.Consumers != nil {
		s.consumers = *q.Consumers
	}
	switch pd := q.MessageStats.PublishDetails; {
	case pd.AvgRate != nil:
		s.publishRate = *pd.AvgRate
	case pd.Rate != nil:
		s.publishRate = *pd.Rate
	}
	if math.IsNaN(s.publishRate) || s.publishRate < 0 {
		s.publishRate = 0
	}
	return s, nil
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
