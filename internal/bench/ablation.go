package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/queue"
)

// PhaseAblation runs the raw amqp091-go loop in variants, one broker feature
// of the farm's request path toggled at a time and, cumulatively, up to the
// farm's full set (issue 15).
const PhaseAblation = "ablation"

// The farm's request path, as pkg/queue and pkg/api do it (mirrored here, not
// called: the ablation measures the broker features, not the farm's code).
const (
	// ablationTimeout is the API's default REQUEST_TIMEOUT
	// (api.DefaultRequestTimeout): the deadline behind the TTL and the
	// deadline header.
	ablationTimeout = 10 * time.Second
	// ablationMaxLength is QUEUE_MAX_LENGTH's default, applied by the farm as
	// a policy with overflow=reject-publish.
	ablationMaxLength = 10000
	// ablationFarmPrefetch is the worker's default prefetch: PREFETCH=0 means
	// the model's concurrency, queue.DefaultConcurrency (4) for the seed model.
	ablationFarmPrefetch = queue.DefaultConcurrency
	// ablationRawPrefetch is the plain raw loop's prefetch (-raw-prefetch's
	// default).
	ablationRawPrefetch = 32
	// ablationAckBatch is the ack-batching variant's batch: the responder
	// acks with multiple=true every ablationAckBatch deliveries, or as soon as
	// no delivery is waiting.
	ablationAckBatch = 16
	// The farm's message types (pkg/queue's requestType and replyType).
	ablationRequestType = "warren.infer.v2"
	ablationReplyType   = "warren.inference.v2"
)

// AblationFeatures are the broker features of one ablation variant.
type AblationFeatures struct {
	// Confirms puts the request publishing channel in confirm mode; a call
	// ends at its reply, or at a nack if that comes first (as queue.Client.Call).
	Confirms bool
	// Mandatory sets the mandatory flag on the request publish (returns are
	// listened for, as the farm does).
	Mandatory bool
	// TTL sets the per-message Expiration from the deadline.
	TTL bool
	// Headers sends the farm's request headers and properties (message id,
	// timestamp, type) and has the responders send the worker's reply headers.
	Headers bool
	// HeadersMin sends the same properties but only the headers that carry
	// something no property does: the schema and the deadline on the request
	// (the request id is the message id, the route is the queue's name), the
	// schema and the status on the reply. Not the farm's; a cheaper candidate.
	HeadersMin bool
	// ReplyQueue replaces direct reply-to with an exclusive, auto-delete,
	// server-named reply queue consumed with auto-ack on a channel of its own,
	// requests published on another channel (the farm's client).
	ReplyQueue bool
	// QueuePolicy makes the request queue durable with x-max-length and
	// x-overflow=reject-publish (the farm: a durable queue bounded by a
	// policy of the same definition).
	QueuePolicy bool
	// OneChannel publishes every caller's requests on one connection's one
	// channel (the farm's API); otherwise the callers are spread over
	// -raw-conns connections with a channel each.
	OneChannel bool
	// Prefetch is the responders' prefetch.
	Prefetch int
	// AckEvery is 1 for an ack per message, N > 1 for multiple=true acks
	// every N deliveries or when idle.
	AckEvery int
}

// AblationVariant is one row of the ablation table.
type AblationVariant struct {
	Name string
	// What describes the change against the plain raw loop.
	What string
	// Cumulative marks the rows that add features on top of each other.
	Cumulative bool
	F          AblationFeatures
}

// The plain raw loop, the first ablation variant, and the farm's full set,
// the last.
const (
	AblationPlain   = "raw"
	AblationFarmSet = "farm-set"
)

// AblationVariants lists the ablation's variants: the plain raw loop, each
// feature on its own, then the farm's features added one by one up to its
// full set.
func AblationVariants() []AblationVariant {
	plain := AblationFeatures{Prefetch: ablationRawPrefetch, AckEvery: 1}
	with := func(f func(*AblationFeatures)) AblationFeatures {
		x := plain
		f(&x)
		return x
	}
	vs := []AblationVariant{
		{Name: AblationPlain, What: fmt.Sprintf("direct reply-to, %s, prefetch %d, ack each, no confirms", "callers over -raw-conns connections", ablationRawPrefetch), F: plain},
		{Name: "+confirms", What: "publisher confirms on the request channel", F: with(func(f *AblationFeatures) { f.Confirms = true })},
		{Name: "+mandatory", What: "mandatory flag (returns listened for)", F: with(func(f *AblationFeatures) { f.Mandatory = true })},
		{Name: "+ttl", What: "per-message expiration from the deadline", F: with(func(f *AblationFeatures) { f.TTL = true })},
		{Name: "+headers", What: "the farm's 3 request headers and 3 properties, 6 reply headers", F: with(func(f *AblationFeatures) { f.Headers = true })},
		{Name: "+headers-min", What: "the same 3 properties, 2 request and 2 reply headers (schema, deadline / status)", F: with(func(f *AblationFeatures) { f.HeadersMin = true })},
		{Name: "+reply-queue", What: "exclusive server-named reply queue, auto-ack, own channel", F: with(func(f *AblationFeatures) { f.ReplyQueue = true })},
		{Name: "+queue-policy", What: fmt.Sprintf("durable request queue, max-length %d, reject-publish", ablationMaxLength), F: with(func(f *AblationFeatures) { f.QueuePolicy = true })},
		{Name: "+one-channel", What: "all callers on one connection's one publishing channel", F: with(func(f *AblationFeatures) { f.OneChannel = true })},
		{Name: "prefetch-1", What: "responder prefetch 1", F: with(func(f *AblationFeatures) { f.Prefetch = 1 })},
		{Name: "prefetch-4", What: fmt.Sprintf("responder prefetch %d (the farm's default)", ablationFarmPrefetch), F: with(func(f *AblationFeatures) { f.Prefetch = ablationFarmPrefetch })},
		{Name: "prefetch-8", What: "responder prefetch 8 (2 × the farm's)", F: with(func(f *AblationFeatures) { f.Prefetch = 2 * ablationFarmPrefetch })},
		{Name: "prefetch-16", What: "responder prefetch 16 (4 × the farm's)", F: with(func(f *AblationFeatures) { f.Prefetch = 4 * ablationFarmPrefetch })},
		{Name: "prefetch-64", What: "responder prefetch 64", F: with(func(f *AblationFeatures) { f.Prefetch = 64 })},
		{Name: "ack-batch", What: fmt.Sprintf("responder acks multiple=true every %d or when idle", ablationAckBatch), F: with(func(f *AblationFeatures) { f.AckEvery = ablationAckBatch })},
	}
	steps := []struct {
		name, what string
		set        func(*AblationFeatures)
	}{
		{"+mandatory", "mandatory", func(f *AblationFeatures) { f.Mandatory = true }},
		{"+ttl", "TTL", func(f *AblationFeatures) { f.TTL = true }},
		{"+headers", "headers", func(f *AblationFeatures) { f.Headers = true }},
		{"+reply-queue", "reply queue", func(f *AblationFeatures) { f.ReplyQueue = true }},
		{"+queue-policy", "queue policy", func(f *AblationFeatures) { f.QueuePolicy = true }},
		{"+one-channel", "one channel", func(f *AblationFeatures) { f.OneChannel = true }},
		{"", "prefetch 4", func(f *AblationFeatures) { f.Prefetch = ablationFarmPrefetch }},
	}
	cum := with(func(f *AblationFeatures) { f.Confirms = true })
	what := "confirms"
	for i, s := range steps {
		s.set(&cum)
		what += " + " + s.what
		name := "cum" + s.name
		if i == len(steps)-1 {
			name = AblationFarmSet
		}
		vs = append(vs, AblationVariant{Name: name, What: what, Cumulative: true, F: cum})
	}
	return vs
}

// SelectAblationVariants picks the variants named in a comma-separated list
// ("" or "all": every one), in AblationVariants' order. The plain raw loop is
// always included: the table's ratios are to it.
func SelectAblationVariants(list string) ([]AblationVariant, error) {
	all := AblationVariants()
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return all, nil
	}
	want := map[string]bool{AblationPlain: true}
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.ContainsFunc(all, func(v AblationVariant) bool { return v.Name == n }) {
			names := make([]string, len(all))
			for i, v := range all {
				names[i] = v.Name
			}
			return nil, fmt.Errorf("-ablation-variants: unknown variant %q (want some of %s)", n, strings.Join(names, ","))
		}
		want[n] = true
	}
	var out []AblationVariant
	for _, v := range all {
		if want[v.Name] {
			out = append(out, v)
		}
	}
	return out, nil
}

// declareAblationQueue declares the request queue of one ablation run: plain
// (non-durable, no arguments) or, with policy, durable with the farm's bound.
func declareAblationQueue(url, name string, policy bool) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	var args amqp.Table
	if policy {
		args = amqp.Table{"x-max-length": int32(ablationMaxLength), "x-overflow": "reject-publish"}
	}
	if _, err := ch.QueueDeclare(name, policy, false, false, false, args); err != nil {
		return fmt.Errorf("declare %s: %w", name, err)
	}
	return nil
}

// deleteQueue deletes queue name (best effort).
func deleteQueue(url, name string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(name, false, false, false)
	}
}

// StartAblationResponders starts n responders on queue with f's prefetch,
// acking and reply headers. They run until Close.
func StartAblationResponders(url, queue string, n int, f AblationFeatures) (*Responders, error) {
	r := &Responders{}
	for i := range n {
		conn, err := amqp.Dial(url)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("responder dial: %w", err)
		}
		r.conns = append(r.conns, conn)
		ch, err := conn.Channel()
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("responder channel: %w", err)
		}
		if err := ch.Qos(f.Prefetch, 0, false); err != nil {
			r.Close()
			return nil, fmt.Errorf("responder qos: %w", err)
		}
		deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("responder consume: %w", err)
		}
		worker := "bench-responder-" + strconv.Itoa(i)
		r.wg.Go(func() { respondAblation(ch, deliveries, f, worker) })
	}
	return r, nil
}

// respondAblation answers deliveries: the reply (with the worker's headers
// under f.Headers) on the consuming channel, then an ack per message or, with
// f.AckEvery > 1, one multiple=true ack every f.AckEvery deliveries or as soon
// as no further delivery is waiting.
func respondAblation(ch *amqp.Channel, deliveries <-chan amqp.Delivery, f AblationFeatures, worker string) {
	ctx := context.Background()
	var unacked int
	var last uint64
	for {
		var d amqp.Delivery
		var ok bool
		if unacked > 0 {
			select {
			case d, ok = <-deliveries:
			default: // idle: flush the batch before waiting
				if err := ch.Ack(last, true); err != nil {
					return
				}
				unacked = 0
				d, ok = <-deliveries
			}
		} else {
			d, ok = <-deliveries
		}
		if !ok {
			return
		}
		taken := time.Now()
		if d.ReplyTo != "" {
			p := amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: rawReply}
			switch {
			case f.HeadersMin:
				p.Type = ablationReplyType
				p.Headers = amqp.Table{queue.HeaderSchema: int32(queue.SchemaVersion), queue.HeaderStatus: queue.StatusOK}
			case f.Headers:
				p.Type = ablationReplyType
				p.Headers = amqp.Table{
					queue.HeaderSchema: int32(queue.SchemaVersion), queue.HeaderStatus: queue.StatusOK, queue.HeaderWorker: worker,
					queue.HeaderReceivedUs: taken.UnixMicro(),
					queue.HeaderComputeUs:  time.Since(taken).Microseconds(), queue.HeaderSlots: int32(queue.DefaultConcurrency),
				}
			}
			if err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, p); err != nil {
				return
			}
		}
		if f.AckEvery <= 1 {
			if err := d.Ack(false); err != nil {
				return
			}
			continue
		}
		unacked++
		last = d.DeliveryTag
		if unacked >= f.AckEvery {
			if err := ch.Ack(last, true); err != nil {
				return
			}
			unacked = 0
		}
	}
}

// AblationClient is the client side of one ablation variant: like RawClient
// (callers demultiplexed by correlation id "<slot>.<seq>"), with f's features.
type AblationClient struct {
	queue    string
	f        AblationFeatures
	conns    []*ablationConn
	returned atomic.Int64
	wg       sync.WaitGroup
}

type ablationConn struct {
	rawConn
	replyTo string
}

// NewAblationClient dials the client's connections: one with f.OneChannel,
// else conns.
func NewAblationClient(url, queueName string, conns int, f AblationFeatures) (*AblationClient, error) {
	c := &AblationClient{queue: queueName, f: f}
	if f.OneChannel {
		conns = 1
	}
	for range conns {
		conn, err := amqp.Dial(url)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client dial: %w", err)
		}
		ac := &ablationConn{rawConn: rawConn{conn: conn, closed: make(chan struct{})}}
		c.conns = append(c.conns, ac)
		if ac.ch, err = conn.Channel(); err != nil {
			c.Close()
			return nil, fmt.Errorf("client channel: %w", err)
		}
		if f.Confirms {
			if err := ac.ch.Confirm(false); err != nil {
				c.Close()
				return nil, fmt.Errorf("client confirm: %w", err)
			}
		}
		if f.Mandatory {
			returns := ac.ch.NotifyReturn(make(chan amqp.Return, 64))
			c.wg.Go(func() {
				for range returns {
					c.returned.Add(1)
				}
			})
		}
		var replies <-chan amqp.Delivery
		if f.ReplyQueue {
			rch, err := conn.Channel()
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("client reply channel: %w", err)
			}
			rq, err := rch.QueueDeclare("", false, true, true, false, nil)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("client declare reply queue: %w", err)
			}
			ac.replyTo = rq.Name
			if replies, err = rch.Consume(rq.Name, "", true, true, false, false, nil); err != nil {
				c.Close()
				return nil, fmt.Errorf("client consume reply queue: %w", err)
			}
		} else {
			ac.replyTo = directReplyTo
			if replies, err = ac.ch.Consume(directReplyTo, "", true, false, false, false, nil); err != nil {
				c.Close()
				return nil, fmt.Errorf("client consume reply-to: %w", err)
			}
		}
		c.wg.Go(func() { ac.demux(replies) })
	}
	return c, nil
}

// Returned is the number of requests the broker returned as unroutable.
func (c *AblationClient) Returned() int64 { return c.returned.Load() }

// Caller returns the CallFunc factory for RunClosedLoop: caller i uses
// connection i mod len(conns).
func (c *AblationClient) Caller() func(i int) CallFunc {
	return func(i int) CallFunc {
		ac := c.conns[i%len(c.conns)]
		mine := make(chan uint64, 1)
		ac.mu.Lock()
		slot := len(ac.slots)
		ac.slots = append(ac.slots, mine)
		ac.mu.Unlock()

		prefix := strconv.Itoa(slot) + "."
		bodyPrefix := `{"data":"raw-` + strconv.Itoa(i) + `-`
		const bodySuffix = `","forward_to_model":true}`
		// A request id of the length of echo's (32 characters).
		ridPrefix := fmt.Sprintf("%016x", uint64(i)+1)
		var seq uint64
		return func(ctx context.Context) string {
			seq++
			corr := prefix + strconv.FormatUint(seq, 10)
			body := bodyPrefix + strconv.FormatUint(seq, 10) + bodySuffix
			msg := amqp.Publishing{
				ContentType:   "application/json",
				CorrelationId: corr,
				ReplyTo:       ac.replyTo,
				Body:          []byte(body),
			}
			now := time.Now()
			deadline := now.Add(ablationTimeout)
			if c.f.TTL {
				msg.Expiration = strconv.FormatInt(max(deadline.Sub(now).Milliseconds(), 1), 10)
			}
			if c.f.HeadersMin {
				msg.MessageId = ridPrefix + fmt.Sprintf("%016x", seq)
				msg.Timestamp = now
				msg.Type = ablationRequestType
				msg.Headers = amqp.Table{
					queue.HeaderSchema:   int32(queue.SchemaVersion),
					queue.HeaderDeadline: deadline.UnixMilli(),
				}
			}
			if c.f.Headers {
				rid := ridPrefix + fmt.Sprintf("%016x", seq)
				msg.MessageId = rid
				msg.Timestamp = now
				msg.Type = ablationRequestType
				msg.Headers = amqp.Table{
					queue.HeaderSchema:      int32(queue.SchemaVersion),
					queue.HeaderDeadline:    deadline.UnixMilli(),
					queue.HeaderPublishedUs: now.UnixMicro(),
				}
			}
			var confirmed <-chan struct{}
			var dc *amqp.DeferredConfirmation
			var err error
			if c.f.Confirms {
				dc, err = ac.ch.PublishWithDeferredConfirmWithContext(ctx, "", c.queue, c.f.Mandatory, false, msg)
				if dc != nil {
					confirmed = dc.Done()
				}
			} else {
				err = ac.ch.PublishWithContext(ctx, "", c.queue, c.f.Mandatory, false, msg)
			}
			if err != nil {
				if ctx.Err() != nil {
					return "canceled"
				}
				return "publish-error"
			}
			for {
				select {
				case got := <-mine:
					if got != seq {
						continue // stale
					}
					return ""
				case <-confirmed:
					confirmed = nil
					if !dc.Acked() {
						return "nack"
					}
				case <-ac.closed:
					return "conn-closed"
				case <-ctx.Done():
					return "canceled"
				}
			}
		}
	}
}

// Close closes the client's connections and waits for its goroutines.
func (c *AblationClient) Close() {
	for _, ac := range c.conns {
		_ = ac.conn.Close()
	}
	c.wg.Wait()
}

// AblationRow is one variant's runs.
type AblationRow struct {
	Variant AblationVariant
	Sum     *Summary
	// Returned counts requests returned as unroutable over all runs.
	Returned int64
}

// AblationRun is the ablation phase's result.
type AblationRun struct {
	Concurrency int
	Responders  int
	Conns       int
	Rows        []*AblationRow
}

// ablationSteps is the number of measured runs of the ablation phase.
func (b *bench) ablationSteps() int {
	vs, _ := SelectAblationVariants(b.cfg.AblationVariants)
	return len(vs) * b.cfg.AblationRuns
}

// ablation runs every selected variant AblationRuns times at
// AblationConcurrency, the variants alternating (roundOrder); each run gets a
// fresh request queue, responders and client in the bench vhost.
func (b *bench) ablation(ctx context.Context) error {
	cfg := b.cfg
	vs, err := SelectAblationVariants(cfg.AblationVariants)
	if err != nil {
		return err
	}
	run := &AblationRun{Concurrency: cfg.AblationConcurrency, Responders: cfg.RawResponders, Conns: cfg.RawConns}
	b.rep.Ablation = run
	byName := map[string]*AblationRow{}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
		row := &AblationRow{Variant: v, Sum: &Summary{}}
		run.Rows = append(run.Rows, row)
		byName[v.Name] = row
	}
	for r := 1; r <= cfg.AblationRuns; r++ {
		for _, name := range roundOrder(names, r) {
			row := byName[name]
			res, returned, err := b.runAblation(ctx, row.Variant, r)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", name, r, err)
			}
			row.Sum.Add(res)
			row.Returned += returned
			b.progress(fmt.Sprintf("ablation %-17s c=%-3d run %d/%d", name, cfg.AblationConcurrency, r, cfg.AblationRuns), res)
		}
	}
	return nil
}

// runAblation measures one run of variant v.
func (b *bench) runAblation(ctx context.Context, v AblationVariant, run int) (*Result, int64, error) {
	q := fmt.Sprintf("bench.ablation.%s.%d", strings.TrimLeft(v.Name, "+"), run)
	if err := declareAblationQueue(b.vurl, q, v.F.QueuePolicy); err != nil {
		return nil, 0, err
	}
	defer deleteQueue(b.vurl, q)
	resp, err := StartAblationResponders(b.vurl, q, b.cfg.RawResponders, v.F)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Close()
	client, err := NewAblationClient(b.vurl, q, b.cfg.RawConns, v.F)
	if err != nil {
		return nil, 0, err
	}
	defer client.Close()
	s := b.sampler(map[string]func() []int{})
	var usage *CPUUsage
	lc := LoopConfig{
		Concurrency:   b.cfg.AblationConcurrency,
		Warmup:        b.cfg.Warmup,
		Duration:      b.cfg.AblationDuration,
		OnWindowStart: s.Start,
		OnWindowEnd:   func() { usage = s.Stop() },
	}
	res, err := RunClosedLoop(ctx, lc, client.Caller())
	if err != nil {
		return nil, 0, err
	}
	res.CPU = usage
	return res, client.Returned(), nil
}

// perReqMicros is the median over runs of group's CPU per successful request
// in µs ("bench" or "broker"), or -1 when no run sampled it.
func perReqMicros(s *Summary, group string) float64 {
	var xs []float64
	for _, r := range s.Runs {
		if r.CPU == nil || r.OK() == 0 {
			continue
		}
		cores, ok := r.CPU.Cores[group]
		if !ok {
			continue
		}
		xs = append(xs, cores*r.Window.Seconds()/float64(r.OK())*1e6)
	}
	if len(xs) == 0 {
		return -1
	}
	return Median(xs)
}

func fmtMicros(x float64) string {
	if x < 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

// PrintAblation prints the ablation table: every variant's median req/s, its
// ratio to the plain raw loop, median p50 and p99, and the broker's and the
// bench process's (client + responders) CPU per request.
func (r *Report) PrintAblation(w io.Writer) {
	a := r.Ablation
	if a == nil {
		return
	}
	_, _ = fmt.Fprintf(w, "\n## Ablation: what each broker feature costs (raw amqp091-go loop, %d callers, %d responders, %d client connections unless one channel; median of %d alternating runs)\n\n",
		a.Concurrency, a.Responders, a.Conns, r.Cfg.AblationRuns)
	var plain *Summary
	for _, row := range a.Rows {
		if row.Variant.Name == AblationPlain {
			plain = row.Sum
		}
	}
	_, _ = fmt.Fprintln(w, "| variant | change against raw | req/s | × raw | per round × raw (range) | p50 | p99 | broker µs/req | client+responder µs/req | failures |")
	_, _ = fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|")
	cum := false
	for _, row := range a.Rows {
		if row.Variant.Cumulative && !cum {
			cum = true
			_, _ = fmt.Fprintln(w, "| *cumulative, from +confirms* | | | | | | | | | |")
		}
		s := row.Sum
		ratio, paired := "-", "-"
		if plain != nil && plain.RPS() > 0 {
			ratio = fmtRatio(s.RPS() / plain.RPS())
		}
		if xs := perRunRatios(s, plain); len(xs) > 0 {
			paired = fmtRatio(Median(xs)) + " (" + fmtRange(xs) + ")"
		}
		fails := "0"
		if f := s.Failures(); len(f) > 0 {
			fails = fmtFailures(f)
		}
		if row.Returned > 0 {
			fails += fmt.Sprintf(", %d returned", row.Returned)
		}
		_, _ = fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Variant.Name, row.Variant.What,
			fmtRate(s.RPS()), ratio, paired, fmtDur(s.Percentile(50)), fmtDur(s.Percentile(99)),
			fmtMicros(perReqMicros(s, "broker")), fmtMicros(perReqMicros(s, "bench")), fails)
	}
	_, _ = fmt.Fprintln(w, "\n× raw: median req/s over raw's; per round: the median of each round's ratio to raw's run of the same round (noise on a shared machine moves both).")
	_, _ = fmt.Fprintln(w, "broker µs/req: beam.smp CPU time per successful request; client+responder µs/req: the bench process's (client, responders and loop); medians over the runs.")
}
