// Package queue is warren's AMQP plumbing, and the only package that speaks AMQP:
// the connection lifecycle with reconnects, the topology, the sync RPC [Client] the
// API calls models with, the [JobPublisher], the workers' [Consumer] and
// [JobConsumer] with their handler middleware, the API's [ResultConsumer], and the
// model announcements ([Announcer], [Watcher]). It is written against RabbitMQ 3.10
// with amqp091-go v1.16 and was checked on 3.10.8; the broker version is logged at
// every start ("connected to broker", version=…). AMQP header tables never leave
// the package: callers see [Headers] (string values).
//
// # Topology: a route per model version
//
// Every model version is a [Route] with queues of its own: the sync request queue
// warren.req.<model>.v<version> (durable; classic, or quorum with
// [DialConfig].RequestQueueType) and the job queue
// warren.job.<model>.v<version> (durable, quorum). A worker consumes only the routes
// of the models it loaded, each on a channel with its own prefetch and handler
// goroutines, so one model's backlog never delays another model's calls, "no
// workers" is per model version, and each model scales on its own. A version gets a
// queue, not a routing key, so that its consumers, backlog and bound are the
// broker's own per-queue facts.
//
// Request queues have no x-arguments but their type (none at all when classic).
// Their bound is one policy for every warren.req.* queue ([ApplyPolicy], name
// [PolicyName]): max-length with
// overflow=reject-publish, so a full queue nacks the publish and the caller gets
// [ErrQueueFull] at once. The default overflow (drop-head) would silently drop the
// oldest callers' requests while confirming new ones. Redeclaring a queue with
// different x-arguments fails with 406 PRECONDITION_FAILED and turns a config change
// into a crash loop, which is why the bound is not an x-argument (and why a queue
// found with the other type is used as it is; [RetypeRequestQueue] converts it). The bound counts
// ready messages only: the real bound is max-length plus the sum of the workers'
// prefetch. Request queues have no dead-letter exchange: expired requests would
// flood it, and nobody waits for them.
//
// # Handlers and middleware
//
// A [Handler] turns a [Message] into a reply body; [Middleware] wraps handlers
// (watermill's router middleware is the model) and [Standard] is the chain a worker
// runs: [Observe] (outcome and duration for metrics), [CheckDeadline] (the deadline
// check at dequeue), [Trace] (the W3C trace context from the message headers, the
// "queue wait" and "process <queue>" spans) and [Recover] (a panic becomes an error
// reply). The consumer maps the handler's result to one outcome with [Classify]:
// a reply, an error reply with a reason, or an ack without reply (expired, or the
// deadline passed while computing).
//
// # Replies
//
// Each connection generation of the [Client] declares one exclusive, server-named
// reply queue and consumes it with auto-ack. Replies are demultiplexed by correlation
// id ("g<generation>-<sequence>"); there is never a queue or a dial per request.
// It was chosen over direct reply-to by measurement: in raw loops on the project's
// 2-core machine one exclusive reply queue per connection did 16,300 round trips/s
// against 12,400 for direct reply-to (measured while designing warren), and the
// benchmark's diagnostic found it costs the broker no more per request (45 vs 41–52
// µs, BENCHMARKS.md). It also lets the publisher and the reply consumer use separate
// channels (direct reply-to requires the same one).
// A reply whose correlation id matches no waiting call (late after a timeout, or a
// duplicate) is dropped and counted ([ClientStats].UnknownReplies), never delivered
// to another caller. Replies carry no trace context: the caller's span already
// covers the call. Workers publish replies without mandatory: on RabbitMQ 3.x a
// mandatory publish to a direct reply-to name is delivered and also returned as
// NO_ROUTE, and a reply to a caller that has gone should simply be dropped.
//
// # Requests
//
// Requests are Open Inference Protocol (v2) requests, published on a confirm-mode
// channel with mandatory set; with tracing on, the client wraps the call in a
// producer span "publish <queue>" and sends its trace context in the headers. Confirms are
// tracked asynchronously (a deferred confirmation per publish, awaited together with
// the reply, never a round trip before it): a nack means the queue is full; a
// basic.return means the request queue does not exist ([ErrNoWorkers]). Every request
// carries its deadline twice: as the AMQP expiration, which drops it at the queue
// head, and as an absolute deadline header ([HeaderDeadline]), because the broker does
// not expire messages a worker has already prefetched. The worker checks the header
// when a handler takes a message from its buffer, skips expired ones (counted) and
// passes a context with the deadline to the model. A schema header ([HeaderSchema])
// lets API and workers roll out independently; a worker answers a request of an
// unknown schema with an error reply instead of guessing.
//
// # No workers
//
// AMQP cannot say "deliver only if someone listens" (immediate was removed in 3.0),
// so the client reads the consumer count of every request queue it watches
// ([Client.Watch]: the API watches every model version it knows) with a passive
// declare on a dedicated channel every [ClientConfig].ConsumerRefresh (200ms) in the
// background, never per request. With zero consumers a call fails at once with
// [ErrNoWorkers].
// Callers whose requests are already queued when the last worker dies keep waiting
// until their deadline: a worker that comes back in time (a restart, a rolling
// update) answers them; otherwise they get a timeout and their message expires in the
// queue.
//
// # Reconnects and generations
//
// The reconnect loop is our own, with capped, jittered exponential backoff (100ms to
// 2s). amqp091-go's experimental Config.Recovery is deliberately not used: on
// 3.10 it re-declares a server-named reply queue under a new name while the
// application's reply_to stays old, and it lets deliveries of the old session be
// acked on the new one, acking the wrong message and closing the channel with 406.
// Instead every connection is a generation: when it drops, the client's pending calls
// of that generation fail at once with [ErrBrokerUnavailable], a new reply queue is
// declared and swapped in atomically, and replies of the old generation cannot reach
// new calls (their correlation ids and reply queue are gone). On the worker, acks and
// replies always go to the channel a delivery came from, so a delivery of an old
// generation can never ack a message of a new one; its ack simply fails. Connection
// blocked notifications (memory or disk alarm) make calls fail at once with
// [ErrBrokerUnavailable] instead of stalling. RabbitMQ announces the block only when
// the connection next publishes, so the one request that meets a fresh alarm waits
// for its deadline; every later one gets the 503 at once. Every connection carries a
// connection_name ("warren-<role> <host> pid <pid>").
//
// # At most one computation per request
//
// A worker acks a request only after its reply was published on the same channel.
// When a connection drops, the broker requeues the worker's unacked requests and
// marks them redelivered. A redelivered request is not computed again when (a) this
// worker already answered it (a bounded cache of recent replies by reply queue and
// correlation id; the cached reply is re-sent), or (b) its caller's reply queue is
// gone: a passive declare of another connection's exclusive queue answers 405
// RESOURCE_LOCKED while it lives and 404 NOT_FOUND once its connection closed. That
// probe costs a channel and a round trip (and the broker logs the refused declare as a
// channel error), so it is made for redelivered requests only.
//
// # Jobs
//
// Jobs are published by the [JobPublisher] on a connection of its own, so nothing
// about the job path can disturb sync calls: a job queue that cannot be declared (a
// 406 after changed arguments, quorum queues unavailable) makes only job publishing
// fail ([ErrJobTopology]) and shows in [JobPublisher.State]. Workers report job
// events (pkg/jobs' Event) to the results queue; the API's [ResultConsumer] applies
// them. jobs.go draws the path.
//
// # Model announcements
//
// Workers announce what they serve (model versions with their v2 metadata) on the
// fanout exchange [ModelsExchange]: when they connect, when their state changes,
// every few seconds, when an API asks on [DiscoverExchange], and a last "leaving"
// when they stop. The API's [Watcher] feeds its model catalog (pkg/catalog), which
// decides 404 (never announced) from 503 (known, no consumer).
//
// # Draining
//
// [Consumer.Run] drains when its context ends: it cancels the subscription, nacks
// with requeue every delivery it will not start (a cancelled consumer's prefetched
// deliveries are otherwise held until the channel closes), lets in-flight requests
// finish and reply within DrainTimeout, then closes the connection.
package queue
