package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Announcement is what a worker tells the API replicas about itself: the model
// versions it serves, with their metadata, and whether it is ready. Workers publish
// one when they connect, when their state changes, every Interval, when an API asks
// (a discover request), and a last one with State "leaving" when they stop.
type Announcement struct {
	Worker string `json:"worker"`
	// State is "starting" (models loading), "ready", "unready" (models failing) or
	// "leaving".
	State string `json:"state"`
	// IntervalMs is how often the worker announces; an announcement older than a few
	// intervals means the worker is gone.
	IntervalMs int64               `json:"interval_ms"`
	At         time.Time           `json:"at"`
	Models     []ModelAnnouncement `json:"models"`
}

// Announcement states.
const (
	StateStarting = "starting"
	StateReady    = "ready"
	StateUnready  = "unready"
	StateLeaving  = "leaving"
)

// ModelAnnouncement is one model version a worker serves.
type ModelAnnouncement struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Metadata is the version's v2 metadata (JSON), as the worker's backend
	// reports it.
	Metadata       json.RawMessage `json:"metadata"`
	Ready          bool            `json:"ready"`
	MaxBatchSize   int             `json:"max_batch_size"`
	Concurrency    int             `json:"concurrency"`
	JobConcurrency int             `json:"job_concurrency"`
}

const announceType = "warren.announce.v1"

// declareAnnounce declares the two fanout exchanges of the model directory.
func declareAnnounce(ch *amqp.Channel) error {
	for _, ex := range []string{ModelsExchange, DiscoverExchange} {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", ex, err)
		}
	}
	return nil
}

// listen opens a channel on conn, declares the directory's exchanges and
// subscribes an exclusive, auto-acked queue of this connection to exchange.
func listen(conn *amqp.Connection, exchange string) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	if err := declareAnnounce(ch); err != nil {
		return nil, nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("declare a queue for %s: %w", exchange, err)
	}
	if err := ch.QueueBind(q.Name, "", exchange, false, nil); err != nil {
		return nil, nil, fmt.Errorf("bind a queue to %s: %w", exchange, err)
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("consume from %s: %w", exchange, err)
	}
	return ch, d, nil
}

// AnnouncerConfig configures an [Announcer].
type AnnouncerConfig struct {
	DialConfig
	// Interval between announcements; zero means 10s.
	Interval time.Duration
}

// Announcer publishes a worker's announcements on a connection of its own.
type Announcer struct {
	cfg   AnnouncerConfig
	state func() Announcement
	now   chan struct{}
}

// NewAnnouncer validates cfg; state is called for every announcement.
func NewAnnouncer(cfg AnnouncerConfig, state func() Announcement) (*Announcer, error) {
	cfg.DialConfig.setDefaults("worker-announce")
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	errs := []error{cfg.DialConfig.validate()}
	if cfg.Interval < 0 {
		errs = append(errs, errors.New("queue: Interval must be positive"))
	}
	if state == nil {
		errs = append(errs, errors.New("queue: nil announcement source"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Announcer{cfg: cfg, state: state, now: make(chan struct{}, 1)}, nil
}

// Announce asks for an announcement now (after a state change); it never blocks.
func (a *Announcer) Announce() {
	select {
	case a.now <- struct{}{}:
	default:
	}
}

// Run announces until ctx ends, then publishes a "leaving" announcement (best
// effort) and returns.
func (a *Announcer) Run(ctx context.Context) error {
	runSessions(ctx, &a.cfg.DialConfig, a.session)
	return nil
}

func (a *Announcer) session(ctx context.Context, conn *amqp.Connection, _ uint64) error {
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, asks, err := listen(conn, DiscoverExchange)
	if err != nil {
		return err
	}
	publish := func(leaving bool) error {
		an := a.state()
		an.IntervalMs, an.At = a.cfg.Interval.Milliseconds(), time.Now().UTC()
		if leaving {
			an.State = StateLeaving
		}
		body, err := json.Marshal(an)
		if err != nil {
			return err
		}
		return ch.PublishWithContext(context.Background(), ModelsExchange, "", false, false, amqp.Publishing{
			ContentType: contentTypeJSON, Type: announceType, Body: body,
			Headers: amqp.Table{HeaderSchema: int32(SchemaVersion), HeaderWorker: an.Worker},
		})
	}
	if err := publish(false); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = publish(true)
			return nil
		case e := <-closed:
			return closeErr(e)
		case _, ok := <-asks:
			if !ok {
				return errors.New("discover subscription ended")
			}
		case <-a.now:
		case <-t.C:
		}
		if err := publish(false); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
	}
}

// WatcherConfig configures a [Watcher].
type WatcherConfig struct {
	DialConfig
}

// Watcher receives the workers' announcements on behalf of the API, on a connection
// of its own. On every (re)connect it asks every worker to announce at once, so a
// new API replica knows the farm within a round trip.
type Watcher struct {
	cfg       WatcherConfig
	handle    func(Announcement)
	mu        sync.Mutex
	connected bool
}

// NewWatcher validates cfg; handle is called for every announcement, on one
// goroutine.
func NewWatcher(cfg WatcherConfig, handle func(Announcement)) (*Watcher, error) {
	cfg.DialConfig.setDefaults("api-models")
	errs := []error{cfg.DialConfig.validate()}
	if handle == nil {
		errs = append(errs, errors.New("queue: nil announcement handler"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, handle: handle}, nil
}

// Connected reports whether the watcher is subscribed.
func (w *Watcher) Connected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.connected
}

func (w *Watcher) setConnected(v bool) {
	w.mu.Lock()
	w.connected = v
	w.mu.Unlock()
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	runSessions(ctx, &w.cfg.DialConfig, w.session)
	return nil
}

func (w *Watcher) session(ctx context.Context, conn *amqp.Connection, _ uint64) error {
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, ans, err := listen(conn, ModelsExchange)
	if err != nil {
		return err
	}
	if err := ch.PublishWithContext(ctx, DiscoverExchange, "", false, false, amqp.Publishing{
		ContentType: "text/plain", Body: []byte("announce"),
	}); err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	w.setConnected(true)
	defer w.setConnected(false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			return closeErr(e)
		case d, ok := <-ans:
			if !ok {
				return errors.New("announcement subscription ended")
			}
			var an Announcement
			if err := json.Unmarshal(d.Body, &an); err != nil || an.Worker == "" {
				w.cfg.Logger.Warn("dropped a malformed model announcement", "err", err)
				continue
			}
			w.handle(an)
		}
	}
}
