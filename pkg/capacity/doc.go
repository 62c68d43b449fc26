// Package capacity estimates how many workers each model version needs, from the
// state of its request queue in the RabbitMQ management API and the service times
// the API process sees in its replies. warren serves every model version on a
// request queue of its own ([queue.Route.RequestQueue], "warren.req.<model>.v<version>"),
// so the estimate is per route: a [Farm] tracks any number of routes and keeps one
// [Snapshot] per route, whose WorkersNeeded is a plain integer. The API exports it
// as the warren_workers_needed gauge (one series per route) and serves it as JSON
// ([Farm.Handler]) for KEDA's metrics-api scaler, one ScaledObject per worker pool;
// the Prometheus recording rule warren:workers_needed:ceil computes the same
// formula fleet-wide.
//
// # The formula, per route
//
// Every term belongs to one route (model version) and its request queue; nothing
// is shared between routes but the configuration (U, W, the window).
//
//	λ = P + T    arrival rate, requests/s, averaged over the window (1 min)
//	    P = publish rate into the route's request queue: management API,
//	        message_stats.publish_details.avg_rate over the window; it is
//	        global, so it covers every API replica
//	    T = rate of the route's requests this API turned away with no_workers
//	        (never published, so not in P); local to this API replica
//	S = mean service (compute) time of the route's requests answered in the
//	    window, s; when none was answered in the window, the recent mean (a moving
//	    average of the route's earlier answers); before the route's first answer,
//	    DefaultServiceTime (100 ms)
//	C = handler slots per worker (the answering worker's CONCURRENCY, as last
//	    reported in a reply of the route); 1 until a worker has answered
//	B = ready messages in the route's request queue (messages_ready)
//	U = target utilisation of a slot (0.7)
//	W = target wait for the backlog (1 s)
//
//	workers needed = ceil( (λ·S/U + B·S/W) / C )
//
//	at least 1 whenever there is demand in the window or work in progress
//	(λ > 0, B > 0 or unacknowledged messages > 0; λ includes turned-away
//	requests), and 0 only when the route is idle.
//
// λ·S is the number of slots kept busy by the arrivals (Little's law); dividing by
// U leaves headroom so requests rarely wait for a slot. B·S/W is the number of extra
// slots that would drain the backlog within W. Unacknowledged messages are not a
// term of their own: they are the requests workers already hold (being computed or
// waiting in a worker's prefetch buffer, which is at most its CONCURRENCY), and by
// Little's law their average number is exactly the λ·S the first term already
// provides slots for; adding them would count the same requests twice. They only
// keep the estimate at 1 or more, so that long requests still running after
// their arrivals have left the window do not let the pool scale to zero.
//
// The turned-away rate is what makes a pool scaled to zero wake up: with no
// consumer the API answers 503 no_workers at once and publishes nothing, so P and B
// stay 0, but T > 0 and the estimate becomes at least 1.
//
// # Before the first answer
//
// A route that is tracked but none of whose requests has been answered yet (a
// model version new to this API process, or a pool that starts at zero) reports
// exactly this:
//
//   - service_time is DefaultServiceTime in seconds (0.1 by default) and
//     service_time_source is "default"; answered is 0.
//   - slots_per_worker is 0, meaning "not reported yet"; the formula uses C = 1.
//   - workers_needed is ceil(λ·S/U + B·S/W) with those S and C, but at least 1 as
//     soon as λ > 0, B > 0 or unacked > 0, and 0 otherwise. With the defaults: an
//     idle route needs 0; a single turned-away request in the window (λ = 1/60)
//     needs 1; 25 ready messages with nothing arriving need ceil(25·0.1/1) = 3.
//   - Until the management API has been read, ready, unacked, consumers and
//     publish_rate are 0, stale is true, error says why ("management API not read
//     yet") and updated_at is omitted; a route tracked after a read starts from
//     that read.
//
// S and C are the route's own: a new version of a model does not inherit them from
// an older one. After the first answer S is the window's mean, then the recent
// mean once the answers have left the window; it never goes back to the default.
// C stays the last reported value.
//
// # The management API
//
// [Farm.Run] reads GET /api/queues/{vhost}?columns=… once per interval for all the
// routes: the columns filter (which the management API honours for the nested
// message_stats fields too) asks for the name, messages_ready,
// messages_unacknowledged, consumers and the publish rate averaged over the window
// (msg_rates_age), and the answer is decoded as it streams in, keeping only the
// names that start with [queue.RequestQueuePrefix]. The server's own name filter is
// not used: it works only with pagination, at most 500 queues a page. The answer is
// capped at 16 MiB, some 80,000 queues of any kind in the vhost at about 200 bytes
// each; a larger one is a failed read.
//
// The management API refreshes its statistics every 5 s, so P, B and the consumer
// count lag by up to that much plus the polling interval. While the management API
// cannot be read, every route keeps the last values read and [Snapshot].Stale is
// set. A route whose queue is not in the list (not declared yet, or deleted) counts
// as empty, stale, with the error [ErrQueueNotFound]; so does every route when the
// vhost does not exist ([ErrVhostNotFound]). A queue listed without statistics yet
// (for a few seconds after it is declared) keeps the last values, stale, with
// [ErrNoStatistics]. T and S are local to the API process that observes them:
// with several API replicas each one sees its share, which is a fair sample for
// S, and enough for the "at least 1" rule since every replica turns requests away
// while a pool is at zero.
//
// # Routes
//
// The API calls [Farm.Track] when a model version becomes known: a worker
// announces it, or the API starts with it in its catalog. An observation of an
// untracked route tracks it too. At most
// Config.MaxRoutes routes (1024) are tracked; further ones are ignored and counted
// ([Farm.Ignored]). A route is never untracked: a version that is gone keeps
// reporting its (empty) queue, needing 0.
//
// # HTTP and KEDA
//
// [Farm.Handler] answers GET and HEAD with snake_case JSON:
//
//	GET /capacity                         the whole farm ([Summary])
//	{"workers_needed":4,"stale":false,"models":[{"model":"digits","version":"1",
//	  "queue":"warren.req.digits.v1","workers_needed":3,…},{"model":"digits",
//	  "version":"2",…,"workers_needed":1,…}]}
//
//	GET /capacity?model=digits            the sum over digits' versions
//	{"model":"digits","versions":["1","2"],"workers_needed":4,"arrival_rate":12.5,…}
//
//	GET /capacity?model=digits&version=2  one route
//	{"model":"digits","version":"2","queue":"warren.req.digits.v2","workers_needed":1,…}
//
// A model's sum adds up the versions' workers_needed, rates, counts and queue
// counters and takes the largest service_time and slots_per_worker (see
// [Farm.ModelSnapshot]). A model or version that is not tracked gets 404
// {"detail":"…"} — KEDA counts that as a scaler error: an API replica tracks a
// model version once a worker announced it, or at start when its catalog (kept in
// the job store) already knows it — and a value that is not a valid model name or
// version ([queue.ValidModelName], [queue.ValidVersion]) gets 400 naming the
// parameter.
//
// The value already is a worker count, so each trigger uses metricType AverageValue
// with targetValue "1": for an external metric with an AverageValue target the HPA
// sets desired replicas = ceil(value / targetValue) = workers_needed, whatever the
// current replica count (with metricType Value it would compute currentReplicas ×
// value / target, which is wrong for a count). KEDA itself scales from 0 to 1 when
// the value exceeds activationTargetValue (default 0) and back to 0 after
// cooldownPeriod at 0; the HPA works between 1 and maxReplicaCount. The HPA ignores
// changes within its tolerance (10% by default), so from 10 replicas up a
// one-worker difference may not move it.
//
// Each worker pool (one worker Deployment) has a ScaledObject of its own whose url
// names the pool's model; with version=V as well it follows one version only:
//
//	apiVersion: keda.sh/v1alpha1
//	kind: ScaledObject
//	metadata:
//	  name: warren-worker-digits
//	spec:
//	  scaleTargetRef:
//	    name: warren-worker-digits     # the digits pool's worker Deployment
//	  pollingInterval: 5               # activation check (0 <-> 1), seconds
//	  cooldownPeriod: 120              # idle this long before scaling to 0
//	  minReplicaCount: 0
//	  maxReplicaCount: 50
//	  triggers:
//	    - type: metrics-api
//	      metricType: AverageValue     # replicas = ceil(workers_needed / 1)
//	      metadata:
//	        url: "http://warren-api.warren.svc:8000/capacity?model=digits"
//	        format: json
//	        valueLocation: workers_needed
//	        targetValue: "1"
//	        activationTargetValue: "0" # wake from 0 as soon as workers_needed >= 1
//
// # Use
//
// Create one [Farm] per API process with [New], start [Farm.Run] in a goroutine
// the caller owns (it returns when its context ends), call [Farm.Track] for every
// model version that becomes known, and feed it from the reply path:
// [Farm.ObserveService] for every answered request and [Farm.ObserveTurnedAway]
// for every no_workers rejection, each with the request's route. Both are cheap
// for a tracked route (no farm-wide lock, a short per-route mutex, no allocation)
// and safe for concurrent use, as are [Farm.Snapshot], [Farm.Snapshots] (for the
// metrics scrape) and the handler.
package capacity
