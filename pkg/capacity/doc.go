// Package capacity estimates how many workers the farm needs, from the request
// queue's state in the RabbitMQ management API and the service times the API
// process sees in replies. The result is a plain integer ([Snapshot].WorkersNeeded):
// the API exports it as the warren_workers_needed gauge and serves it as JSON
// ([Estimator.Handler]) for KEDA's metrics-api scaler; the Prometheus recording rule
// warren:workers_needed:ceil computes the same formula fleet-wide.
//
// # The formula
//
//	λ = P + T    arrival rate, requests/s, averaged over the window (1 min)
//	    P = publish rate into the request queue: management API,
//	        message_stats.publish_details.avg_rate over the window; it is
//	        global, so it covers every API replica
//	    T = rate of requests this API turned away with no_workers (never
//	        published, so not in P); local to this API replica
//	S = mean service (compute) time of the requests answered in the window, s;
//	    when none was answered in the window, the recent mean (a moving average of
//	    earlier answers); before any answer at all, DefaultServiceTime (100 ms)
//	C = handler slots per worker (the answering worker's CONCURRENCY, as last
//	    reported in a reply); 1 until a worker has answered
//	B = ready messages in the request queue (messages_ready)
//	U = target utilisation of a slot (0.7)
//	W = target wait for the backlog (1 s)
//
//	workers needed = ceil( (λ·S/U + B·S/W) / C )
//
//	at least 1 whenever there is demand in the window or work in progress
//	(λ > 0, B > 0 or unacknowledged messages > 0; λ includes turned-away
//	requests), and 0 only when the farm is idle.
//
// λ·S is the number of slots kept busy by the arrivals (Little's law); dividing by
// U leaves headroom so requests rarely wait for a slot. B·S/W is the number of extra
// slots that would drain the backlog within W. Unacknowledged messages are not a
// term of their own: they are the requests workers already hold (being computed or
// waiting in a worker's prefetch buffer, which is at most its CONCURRENCY), and by
// Little's law their average number is exactly the λ·S the first term already
// provides slots for; adding them would count the same requests twice. They only
// keep the estimate at 1 or more, so that long requests still running after
// their arrivals have left the window do not let the farm scale to zero.
//
// The turned-away rate is what makes a farm scaled to zero wake up: with no
// consumer the API answers 503 no_workers at once and publishes nothing, so P and B
// stay 0, but T > 0 and the estimate becomes at least 1. Before any worker has
// answered, S is DefaultServiceTime, so a backlog or turned-away demand still gives
// a positive number of the right order.
//
// The management API refreshes its statistics every 5 s, so P, B and the consumer
// count lag by up to that much plus the polling interval. While the management API
// cannot be read, the last values read are kept and [Snapshot].Stale is set; a queue
// that does not exist (404) counts as empty. T and S are local to the API process
// that observes them: with several API replicas each one sees its share, which is a
// fair sample for S, and enough for the "at least 1" rule since every replica turns
// requests away while the farm is at zero.
//
// # KEDA
//
// [Estimator.Handler] answers GET with the [Snapshot] as camelCase JSON, e.g.
// {"workersNeeded":3,"arrivalRate":12.5,…}. Its value already is a worker count, so
// the trigger uses metricType AverageValue with targetValue "1": for an external
// metric with an AverageValue target the HPA sets desired replicas =
// ceil(value / targetValue) = workersNeeded, whatever the current replica count
// (with metricType Value it would compute currentReplicas × value / target, which is
// wrong for a count). KEDA itself scales from 0 to 1 when the value exceeds
// activationTargetValue (default 0) and back to 0 after cooldownPeriod at 0; the
// HPA works between 1 and maxReplicaCount. The HPA ignores changes within its
// tolerance (10% by default), so from 10 replicas up a one-worker difference may
// not move it.
//
//	apiVersion: keda.sh/v1alpha1
//	kind: ScaledObject
//	metadata:
//	  name: warren-worker
//	spec:
//	  scaleTargetRef:
//	    name: warren-worker            # the worker Deployment
//	  pollingInterval: 5               # activation check (0 <-> 1), seconds
//	  cooldownPeriod: 120              # idle this long before scaling to 0
//	  minReplicaCount: 0
//	  maxReplicaCount: 50
//	  triggers:
//	    - type: metrics-api
//	      metricType: AverageValue     # replicas = ceil(workersNeeded / 1)
//	      metadata:
//	        url: "http://warren-api.warren.svc:8000/capacity"
//	        format: json
//	        valueLocation: workersNeeded
//	        targetValue: "1"
//	        activationTargetValue: "0" # wake from 0 as soon as workersNeeded >= 1
//
// # Use
//
// Create one [Estimator] per request queue with [New], start [Estimator.Run] in a
// goroutine the caller owns (it returns when its context ends), and feed it from the
// reply path: [Estimator.ObserveService] for every answered request and
// [Estimator.ObserveTurnedAway] for every no_workers rejection. Both are cheap
// (a short mutex, no allocation) and safe for concurrent use, as are
// [Estimator.Snapshot] and the handler.
package capacity
