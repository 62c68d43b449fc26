package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/tracing"
)

// JobPublisherConfig configures a [JobPublisher].
type JobPublisherConfig struct {
	DialConfig
	// Tracing, if enabled, wraps every publish in a producer span "publish
	// warren.job.<model>.v<n>" and sends its trace context in the message headers.
	Tracing *tracing.Tracing
	// OnConfirm, if set, is called with the publish → confirm latency of every job
	// the broker confirmed or refused.
	OnConfirm func(Route, time.Duration)
	// TopologyRetry is how often a failed declaration of the job path's shared
	// queues, or of a tracked model's job queue, is retried on a live connection;
	// zero means 5s.
	TopologyRetry time.Duration
}

// JobPublisher publishes jobs and cancel notices on a connection of its own, so
// that nothing about the job path (a job queue declared with other arguments, quorum
// queues unavailable) can disturb sync calls: a broken job topology degrades only
// the job endpoints and shows in [JobPublisher.State]. It implements
// jobs.Publisher.
//
// The job queues of the models it tracks ([JobPublisher.Track]; every model it
// published to is tracked too) are declared at once in every session, and a
// declaration that failed is retried every TopologyRetry: a job queue that an
// operator deleted, or declared with other arguments and then deleted, is declared
// again in the same session, without a reconnect.
type JobPublisher struct {
	cfg     JobPublisherConfig
	sess    atomic.Pointer[jobSession]
	ever    atomic.Bool
	stopped atomic.Bool
	problem atomic.Pointer[string] // why publishing is impossible while connected; nil when fine
	kick    chan struct{}          // a route was tracked: declare it now

	mu     sync.Mutex
	routes map[Route]struct{} // job queues to keep declared
	broken map[string]string  // job queue → why its last declaration failed
}

var _ jobs.Publisher = (*JobPublisher)(nil)

type jobSession struct {
	pub     *amqp.Channel
	conn    *amqp.Connection
	blocked atomic.Bool
	done    chan struct{}

	// returns are the mandatory returns of pub, drained by drainReturns only
	// (under retMu): see there.
	returns <-chan amqp.Return
	retMu   sync.Mutex

	mu       sync.Mutex
	topo     *amqp.Channel       // declarations; replaced after a failed declare closed it
	declared map[string]struct{} // job queues declared in this session
	pending  map[string]chan error
}

// NewJobPublisher validates cfg. Nothing is dialled until Run.
func NewJobPublisher(cfg JobPublisherConfig) (*JobPublisher, error) {
	cfg.DialConfig.setDefaults("api-jobs")
	if cfg.TopologyRetry == 0 {
		cfg.TopologyRetry = 5 * time.Second
	}
	if err := cfg.DialConfig.validate(); err != nil {
		return nil, err
	}
	return &JobPublisher{cfg: cfg, kick: make(chan struct{}, 1), routes: map[Route]struct{}{}, broken: map[string]string{}}, nil
}

// Track makes the publisher declare route r's job queue in every session (at once,
// and again every TopologyRetry while that fails), so that a job queue that cannot
// be declared shows in State before the first job of r is submitted.
func (p *JobPublisher) Track(r Route) {
	if r.Check() != nil || !p.track(r) {
		return
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// track adds r to the tracked routes and reports whether it is new.
func (p *JobPublisher) track(r Route) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.routes[r]; ok {
		return false
	}
	p.routes[r] = struct{}{}
	return true
}

// declared records the outcome of declaring route r's job queue q.
func (p *JobPublisher) declared(r Route, q string, err error) {
	p.mu.Lock()
	old, was := p.broken[q]
	why := ""
	if err != nil {
		why = fmt.Sprintf("jobs of model %s cannot be published: %v", r, err)
		p.broken[q] = why
	} else {
		delete(p.broken, q)
	}
	p.mu.Unlock()
	switch {
	case err != nil && why != old:
		p.cfg.Logger.Warn("jobs of a model cannot be published: declaring its job queue failed", "queue", q,
			"err", err, "retry_every", p.cfg.TopologyRetry)
	case err == nil && was:
		p.cfg.Logger.Info("job queue declared; its jobs can be published again", "queue", q)
	}
}

// JobPublisherState is a snapshot for readiness endpoints.
type JobPublisherState struct {
	Connected bool `json:"connected"`
	// Problem says why jobs cannot be published although connected: the shared job
	// topology, or the job queue of one or more models (each named), could not be
	// declared. Empty when they can.
	Problem string `json:"problem,omitempty"`
}

// State returns a snapshot of the publisher's state.
func (p *JobPublisher) State() JobPublisherState {
	st := JobPublisherState{Connected: p.sess.Load() != nil}
	if !st.Connected {
		return st
	}
	if pr := p.problem.Load(); pr != nil {
		st.Problem = *pr
		return st
	}
	p.mu.Lock()
	whys := make([]string, 0, len(p.broken))
	for _, why := range p.broken {
		whys = append(whys, why)
	}
	p.mu.Unlock()
	slices.Sort(whys)
	st.Problem = strings.Join(whys, "; ")
	return st
}

// Ready reports whether a publish can be attempted now. A model whose job queue
// cannot be declared does not make the publisher unready: only that model's
// publishes fail (ErrJobTopology), and State names it.
func (p *JobPublisher) Ready() bool {
	s := p.sess.Load()
	return s != nil && p.problem.Load() == nil && !s.blocked.Load()
}

// Run connects and keeps the publisher connected until ctx is done.
func (p *JobPublisher) Run(ctx context.Context) error {
	defer p.stopped.Store(true)
	runSessions(ctx, &p.cfg.DialConfig, p.session)
	return nil
}

func (p *JobPublisher) session(ctx context.Context, conn *amqp.Connection, _ uint64) error {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open publish channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	// Large enough that the library never waits on it: every publish drains it
	// after its confirm, and keepTopology every round.
	returns := pub.NotifyReturn(make(chan amqp.Return, 1024))
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	s := &jobSession{pub: pub, conn: conn, done: make(chan struct{}), returns: returns,
		declared: map[string]struct{}{}, pending: map[string]chan error{}}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := range blocked {
			s.blocked.Store(b.Active)
		}
	}()
	topoDone := make(chan struct{})
	topoStop := make(chan struct{})
	go func() { defer close(topoDone); p.keepTopology(s, topoStop) }()

	p.sess.Store(s)
	p.ever.Store(true)
	var cause error
	select {
	case <-ctx.Done():
	case e := <-closed:
		cause = closeCause("connection", e)
	case e := <-pubClosed:
		cause = closeCause("publish channel", e)
	}
	p.sess.CompareAndSwap(s, nil)
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
	close(s.done)
	close(topoStop)
	<-topoDone
	_ = conn.Close()
	wg.Wait()
	return cause
}

// keepTopology declares the shared job topology, then the job queue of every
// tracked route, and retries what failed every TopologyRetry (and a new route at
// once), recording failures as the publisher's problems, until stop closes.
func (p *JobPublisher) keepTopology(s *jobSession, stop <-chan struct{}) {
	t := time.NewTicker(p.cfg.TopologyRetry)
	defer t.Stop()
	logged, shared := "", false
	for {
		if !shared {
			err := s.declare(func(ch *amqp.Channel) error { return declareJobShared(ch) })
			if err == nil {
				shared = true
				p.problem.Store(nil)
				if logged != "" {
					p.cfg.Logger.Info("job topology declared; jobs can be published again")
				}
			} else {
				why := err.Error()
				p.problem.Store(&why)
				if why != logged {
					p.cfg.Logger.Warn("jobs cannot be published: declaring the job topology failed", "err", err, "retry_every", p.cfg.TopologyRetry)
					logged = why
				}
			}
		}
		if shared {
			p.declareRoutes(s, stop)
		}
		s.drainReturns() // returns of publishes that gave up before their confirm
		select {
		case <-stop:
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

// declareRoutes declares every tracked route's job queue not yet declared in
// session s.
func (p *JobPublisher) declareRoutes(s *jobSession, stop <-chan struct{}) {
	p.mu.Lock()
	routes := make([]Route, 0, len(p.routes))
	for r := range p.routes {
		routes = append(routes, r)
	}
	p.mu.Unlock()
	for _, r := range routes {
		select {
		case <-stop:
			return
		default:
		}
		if s.isDeclared(r.JobQueue()) {
			continue
		}
		_, err := s.jobQueue(r)
		p.declared(r, r.JobQueue(), err)
	}
}

// declare runs fn on the session's topology channel, replacing the channel when a
// failed declaration closed it.
func (s *jobSession) declare(fn func(*amqp.Channel) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.topo == nil || s.topo.IsClosed() {
		ch, err := s.conn.Channel()
		if err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		s.topo = ch
	}
	return fn(s.topo)
}

// drainReturns hands every mandatory return queued so far to its publish: the job
// queue does not exist (ErrNoWorkers), so it is declared again before its next use.
// The broker sends a message's basic.return before its basic.ack, and the client
// library queues the return here before it resolves the deferred confirm, so a
// publish that drains after its confirm finds its own return, or finds it already
// delivered by another drain (draining happens only under retMu, delivery
// included). A goroutine reading the returns could still hold it, between taking
// it and delivering it, when the publish looks: the publish would then count a
// message the broker dropped as queued.
func (s *jobSession) drainReturns() {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	for {
		select {
		case r, ok := <-s.returns:
			if !ok {
				return
			}
			s.forget(r.RoutingKey)
			s.deliver(r.CorrelationId, fmt.Errorf("%w: job queue %q does not exist (%s)", ErrNoWorkers, r.RoutingKey, r.ReplyText))
		default:
			return
		}
	}
}

func (s *jobSession) isDeclared(q string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.declared[q]
	return ok
}

// forget makes the session declare job queue q again before its next use.
func (s *jobSession) forget(q string) {
	s.mu.Lock()
	delete(s.declared, q)
	s.mu.Unlock()
}

// jobQueue declares route r's job queue once per session.
func (s *jobSession) jobQueue(r Route) (string, error) {
	q := r.JobQueue()
	if s.isDeclared(q) {
		return q, nil
	}
	if err := s.declare(func(ch *amqp.Channel) error { return declareJobQueue(ch, q) }); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.declared[q] = struct{}{}
	s.mu.Unlock()
	return q, nil
}

func (s *jobSession) register(corr string) (chan error, bool) {
	ch := make(chan error, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return nil, false
	}
	s.pending[corr] = ch
	return ch, true
}

func (s *jobSession) release(corr string) {
	s.mu.Lock()
	if s.pending != nil {
		delete(s.pending, corr)
	}
	s.mu.Unlock()
}

func (s *jobSession) deliver(corr string, err error) {
	s.mu.Lock()
	ch, ok := s.pending[corr]
	s.mu.Unlock()
	if ok {
		select {
		case ch <- err:
		default:
		}
	}
}

// PublishJob publishes a job as a persistent message on its route's job queue and
// returns once the broker confirmed it (the message is then on disk on a quorum of
// nodes). It works with no worker running. Errors: ErrBrokerUnavailable (wrapped)
// when not connected or blocked, ErrJobTopology (wrapped) when the job queues cannot
// be declared (nothing was sent in both cases);
// ErrQueueFull when the broker nacked it; an error wrapping both
// ErrBrokerUnavailable and jobs.ErrUnconfirmed when it was sent but ctx ended or the
// connection was lost before the broker answered: it may or may not be queued.
func (p *JobPublisher) PublishJob(ctx context.Context, m jobs.Message) (err error) {
	r := Route{Model: m.Model, Version: m.Version}
	if err := r.Check(); err != nil {
		return err
	}
	s := p.sess.Load()
	switch {
	case s == nil && p.stopped.Load():
		return ErrClosed
	case s == nil:
		return unavailable("not connected")
	case s.blocked.Load():
		return unavailable("broker is blocking publishers (memory or disk alarm)")
	}
	if pr := p.problem.Load(); pr != nil {
		return fmt.Errorf("%w: %s", ErrJobTopology, *pr)
	}
	p.track(r)
	q, err := s.jobQueue(r)
	p.declared(r, r.JobQueue(), err)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJobTopology, err)
	}
	corr := "job-" + m.ID
	returned, ok := s.register(corr)
	if !ok {
		return unavailable("connection lost")
	}
	defer s.release(corr)

	now := time.Now()
	headers := amqp.Table{
		HeaderSchema:      int32(SchemaVersion),
		HeaderJobID:       m.ID,
		HeaderRequestID:   m.RequestID,
		HeaderModel:       m.Model,
		HeaderVersion:     m.Version,
		HeaderAttempt:     int32(1),
		HeaderPublishedUs: now.UnixMicro(),
	}
	if !m.StartBy.IsZero() {
		headers[HeaderStartBy] = m.StartBy.UnixMilli()
	}
	if tr := p.cfg.Tracing; tr.Enabled() {
		var end func(error)
		ctx, end = startPublishSpan(ctx, tr, q, headers, attribute.String("warren.job_id", m.ID),
			attribute.String("warren.request_id", m.RequestID))
		defer func() { end(err) }()
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, "", q, true, false, amqp.Publishing{
		ContentType:   contentTypeJSON,
		DeliveryMode:  amqp.Persistent,
		CorrelationId: corr,
		MessageId:     m.ID,
		Timestamp:     now,
		Type:          jobType,
		Headers:       headers,
		Body:          m.Body,
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable("publish: " + err.Error())
	}
	select {
	case <-dc.Done():
	case <-s.done:
		return unconfirmed("the connection was lost")
	case <-ctx.Done():
		return unconfirmed(ctx.Err().Error())
	}
	if p.cfg.OnConfirm != nil {
		p.cfg.OnConfirm(r, time.Since(now))
	}
	// A mandatory return arrives before the confirm (see drainReturns).
	s.drainReturns()
	select {
	case err := <-returned:
		return err
	default:
	}
	if !dc.Acked() {
		if s.pub.IsClosed() {
			return unconfirmed("the connection was lost")
		}
		return ErrQueueFull
	}
	return nil
}

// unconfirmed is a publish whose outcome is unknown: sent, but neither confirmed nor
// refused.
func unconfirmed(why string) error {
	return fmt.Errorf("%w: %w: %s", ErrBrokerUnavailable, jobs.ErrUnconfirmed, why)
}

// PublishCancel tells the workers connected now that job id was cancelled, so one
// that receives it later skips it. It is a hint: a worker that connects afterwards
// never hears of it (the store keeps the job cancelled regardless).
func (p *JobPublisher) PublishCancel(ctx context.Context, id string) error {
	s := p.sess.Load()
	if s == nil {
		return unavailable("not connected")
	}
	return s.pub.PublishWithContext(ctx, JobCancel, "", false, false, amqp.Publishing{
		ContentType: "text/plain", Body: []byte(id),
	})
}
