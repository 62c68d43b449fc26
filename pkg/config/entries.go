package config

import (
	"time"

	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
)

// Table is every entry, in the order of docs/configuration.md. An entry missing
// here is not read (its Load records an error); the package's tests check that every
// exported entry is listed once.
var Table = []Entry{
	AMQPURL, ManagementURL, HTTPAddr, RequestTimeout, MaxRequestTimeout, BodyLimit,
	QueueMaxLength, RequestQueueType, AMQPHeartbeat, Concurrency, Prefetch, DrainTimeout,
	ModelRepository, Models, DefaultModel, AdminAPI, ModelSeed, ModelLatency,
	WorkerID, LogLevel, LogFormat, ScaleTargetUtilization, ScaleTargetWait,
	DataDir, RedisURL, RedisPrefix, JobTTL, JobStartTimeout, MaxWait,
	JobConcurrency, JobMaxAttempts, JobRetryBackoff, JobRetryBackoffMax, JobRunTimeout,
	RateLimit, RateBurst, CallerConcurrency, QuotaLeaseTTL,
	OTLPEndpoint, OTLPProtocol, TracesSamplerArg, ServiceName,
	AuthMode, APIKeysFile, APIKeysInit, OIDCIssuer, OIDCAudience, OIDCJWKSURL, OIDCRolesClaim,
	AMQPCAFile, AMQPCertFile, AMQPKeyFile, AMQPServerName, TLSCertFile, TLSKeyFile,
	RedisCAFile, RedisCertFile, RedisKeyFile,
}

// modelName is what a model name must look like (MODELS, DEFAULT_MODEL).
var modelName = queue.ModelNamePattern

// Connection and HTTP.
var (
	// AMQPURL is AMQP_URL.
	AMQPURL = &String{
		Env: "AMQP_URL", ReadBy: Both,
		Default: "amqp://guest:guest@localhost:5672/",
		Usage:   "RabbitMQ URL, including the vhost (amqp:// or amqps://); for a cluster, its nodes' URLs separated by commas (same vhost, credentials and scheme), tried round robin from a random one at each (re)connect.",
	}
	// ManagementURL is MANAGEMENT_URL.
	ManagementURL = &String{
		Env: "MANAGEMENT_URL", ReadBy: APIOnly,
		Default: "http://guest:guest@localhost:15672",
		Usage:   "RabbitMQ management API; the API applies the request queues' bound as a policy through it and reads queue statistics for GET /capacity. Empty disables both (the queues are then unbounded).",
	}
	// HTTPAddr is HTTP_ADDR.
	HTTPAddr = &String{
		Env: "HTTP_ADDR", ReadBy: Both,
		PerBinary: map[string]string{API: ":8000", Worker: ":8001"},
		Usage:     "HTTP listen address.",
	}
	// RequestTimeout is REQUEST_TIMEOUT.
	RequestTimeout = &Duration{
		Env: "REQUEST_TIMEOUT", ReadBy: APIOnly,
		Default: api.DefaultRequestTimeout, Min: time.Millisecond,
		Usage: "Default deadline of a /process call (queue wait + model + reply).",
	}
	// MaxRequestTimeout is MAX_REQUEST_TIMEOUT.
	MaxRequestTimeout = &Duration{
		Env: "MAX_REQUEST_TIMEOUT", ReadBy: APIOnly,
		Default: api.DefaultMaxRequestTimeout, Min: time.Millisecond,
		Usage: "Upper bound for a per-request X-Request-Timeout header; larger values are clamped.",
	}
	// BodyLimit is BODY_LIMIT.
	BodyLimit = &Bytes{
		Env: "BODY_LIMIT", ReadBy: Both,
		Default: httperr.DefaultBodyLimit, Min: 64,
		Usage: "Largest request body accepted (bytes, or with KiB/MiB suffix); larger → 413.",
	}
	// QueueMaxLength is QUEUE_MAX_LENGTH.
	QueueMaxLength = &Int{
		Env: "QUEUE_MAX_LENGTH", ReadBy: APIOnly,
		Default: 10000, Min: 0, Max: 1 << 30,
		Usage: "Bound on ready messages in each model version's request queue (one policy, overflow=reject-publish); a full queue → 503 queue_full. 0 disables the bound.",
	}
	// RequestQueueType is REQUEST_QUEUE_TYPE.
	RequestQueueType = &Enum{
		Env: "REQUEST_QUEUE_TYPE", ReadBy: Both,
		Default: queue.QueueTypeClassic, Allowed: []string{queue.QueueTypeClassic, queue.QueueTypeQuorum},
		Usage: "Type the sync request queues are declared with: classic (one node; the fastest), or quorum (replicated: on a cluster, sync calls survive the loss of a node). A queue that exists with the other type is used as it is, with a warning; `api queues retype` converts it.",
	}
	// AMQPHeartbeat is AMQP_HEARTBEAT.
	AMQPHeartbeat = &Duration{
		Env: "AMQP_HEARTBEAT", ReadBy: Both,
		Default: 10 * time.Second, Min: time.Second, Max: 10 * time.Minute,
		Usage: "AMQP heartbeat asked of the broker (whole seconds; the broker may lower it). A connection that goes silent (a half-open cut) is noticed after about two heartbeats, then the process reconnects.",
	}
)

// Worker capacity and shutdown.
var (
	// Concurrency is CONCURRENCY.
	Concurrency = &Int{
		Env: "CONCURRENCY", ReadBy: WorkerOnly,
		Default: queue.DefaultConcurrency, Min: 1, Max: 4096,
		Usage: "Requests one worker computes at once per model (handler goroutines) when the model's config.yaml gives no concurrency.",
	}
	// Prefetch is PREFETCH.
	Prefetch = &Int{
		Env: "PREFETCH", ReadBy: WorkerOnly,
		Default: 0, Min: 0, Max: 65535,
		Usage: "Unacked requests the broker may push to one worker per model; 0 means equal to the model's concurrency (a batching model takes at least max_batch_size × concurrency).",
	}
	// DrainTimeout is DRAIN_TIMEOUT.
	DrainTimeout = &Duration{
		Env: "DRAIN_TIMEOUT", ReadBy: Both,
		Default: queue.DefaultDrainTimeout, Min: time.Millisecond,
		Usage: "On SIGTERM: how long in-flight work may take to finish before the process exits anyway.",
	}
)

// Models.
var (
	// ModelRepository is MODEL_REPOSITORY.
	ModelRepository = &String{
		Env: "MODEL_REPOSITORY", ReadBy: WorkerOnly,
		Default: "models",
		Usage:   "Directory of the model repository: `<name>/config.yaml` per model, its versions in `<name>/<version>/`.",
	}
	// Models is MODELS.
	Models = &List{
		Env: "MODELS", ReadBy: WorkerOnly,
		Pattern: modelName,
		Usage:   "Comma-separated names of the models to load from MODEL_REPOSITORY; empty loads every model in it.",
	}
	// DefaultModel is DEFAULT_MODEL.
	DefaultModel = &String{
		Env: "DEFAULT_MODEL", ReadBy: APIOnly,
		Default: api.DefaultModel, Pattern: modelName,
		Usage: "The model that POST /process and POST /jobs with a `{\"data\": …}` body call.",
	}
	// AdminAPI is ADMIN_API.
	AdminAPI = &Enum{
		Env: "ADMIN_API", ReadBy: APIOnly,
		Default: api.AdminLoopback, Allowed: api.AdminModes,
		Usage: "Who may change where calls without a version go (`PUT`/`DELETE /v2/models/{name}/traffic`; docs/versions.md): `loopback` — clients on the API's own host, not through a proxy; `on` — anyone who reaches the API (with authentication on, an admin key or role is needed in every mode; without, use `on` only behind a network boundary you trust); `off` — nobody.",
	}
	// ModelSeed is MODEL_SEED.
	ModelSeed = &Uint64{
		Env: "MODEL_SEED", ReadBy: WorkerOnly,
		Default: 0,
		Usage:   "Seed applied to every `seed`-backend model (for tests and benchmarks): mixed with the input hash, the same seed and input always give the same prediction.",
	}
	// ModelLatency is MODEL_LATENCY.
	ModelLatency = &Duration{
		Env: "MODEL_LATENCY", ReadBy: WorkerOnly,
		Default: 0, Min: 0,
		Usage: "Simulated service time added to every prediction of every `seed`-backend model (for tests and benchmarks); honours the request deadline.",
	}
	// WorkerID is WORKER_ID.
	WorkerID = &String{
		Env: "WORKER_ID", ReadBy: WorkerOnly,
		Default: "",
		Usage:   "Identity echoed in replies; empty means hostname-pid.",
	}
)

// Logs.
var (
	// LogLevel is LOG_LEVEL.
	LogLevel = &Enum{
		Env: "LOG_LEVEL", ReadBy: Both,
		Default: "info", Allowed: Levels,
		Usage: "debug, info, warn or error.",
	}
	// LogFormat is LOG_FORMAT.
	LogFormat = &Enum{
		Env: "LOG_FORMAT", ReadBy: Both,
		Default: "text", Allowed: Formats,
		Usage: "text or json (json is the container default).",
	}
)

// Workers-needed estimate.
var (
	// ScaleTargetUtilization is SCALE_TARGET_UTILIZATION.
	ScaleTargetUtilization = &Float{
		Env: "SCALE_TARGET_UTILIZATION", ReadBy: APIOnly,
		Default: capacity.DefaultTargetUtilization, Above: 0, AtMost: 1,
		Usage: "Workers-needed estimate (GET /capacity, warren_workers_needed): the share of worker slots kept busy at the current arrival rate.",
	}
	// ScaleTargetWait is SCALE_TARGET_WAIT.
	ScaleTargetWait = &Duration{
		Env: "SCALE_TARGET_WAIT", ReadBy: APIOnly,
		Default: capacity.DefaultTargetWait, Min: time.Millisecond,
		Usage: "Workers-needed estimate: how fast a backlog of ready messages should be worked off.",
	}
)

// Async jobs.
var (
	// DataDir is DATA_DIR.
	DataDir = &String{
		Env: "DATA_DIR", ReadBy: APIOnly,
		Default: "data",
		Usage:   "Directory of the embedded job store (jobs.db, bbolt) used when REDIS_URL is empty. One API instance only.",
	}
	// RedisURL is REDIS_URL.
	RedisURL = &String{
		Env: "REDIS_URL", ReadBy: APIOnly,
		Default: "",
		Usage:   "Job store for several API replicas (redis://host:6379/0); long-polls are woken across replicas through Redis pub/sub. Empty uses DATA_DIR.",
	}
	// RedisPrefix is REDIS_PREFIX.
	RedisPrefix = &String{
		Env: "REDIS_PREFIX", ReadBy: APIOnly,
		Default: "warren:",
		Usage:   "Prefix of every Redis key and pub/sub channel of the job store, so several farms can share one Redis.",
	}
	// JobTTL is JOB_TTL.
	JobTTL = &Duration{
		Env: "JOB_TTL", ReadBy: APIOnly,
		Default: jobs.DefaultTTL, Min: time.Second,
		Usage: "How long a finished job stays readable; after that GET /jobs/{id} is 404.",
	}
	// JobStartTimeout is JOB_START_TIMEOUT.
	JobStartTimeout = &Duration{
		Env: "JOB_START_TIMEOUT", ReadBy: APIOnly,
		Default: time.Hour, Min: 0,
		Usage: "A job not started this long after submission becomes expired. 0 means never.",
	}
	// MaxWait is MAX_WAIT.
	MaxWait = &Duration{
		Env: "MAX_WAIT", ReadBy: APIOnly,
		Default: api.DefaultMaxWait, Min: 0,
		Usage: "Upper bound of ?wait= on GET /jobs/{id} and of Prefer: wait= on /process.",
	}
	// JobConcurrency is JOB_CONCURRENCY.
	JobConcurrency = &Int{
		Env: "JOB_CONCURRENCY", ReadBy: WorkerOnly,
		Default: queue.DefaultJobConcurrency, Min: 0, Max: 4096,
		Usage: "Jobs one worker runs at once, on a connection, prefetch and handlers of their own (separate from CONCURRENCY). 0 turns the job path off.",
	}
	// JobMaxAttempts is JOB_MAX_ATTEMPTS.
	JobMaxAttempts = &Int{
		Env: "JOB_MAX_ATTEMPTS", ReadBy: WorkerOnly,
		Default: queue.DefaultJobMaxAttempts, Min: 1, Max: queue.JobDeliveryLimit,
		Usage: "Times a job is started at most: model errors are retried until then, and redeliveries after crashes and drains count too. At most 20 (the queue's delivery limit).",
	}
	// JobRetryBackoff is JOB_RETRY_BACKOFF.
	JobRetryBackoff = &Duration{
		Env: "JOB_RETRY_BACKOFF", ReadBy: WorkerOnly,
		Default: queue.DefaultRetryBackoff, Min: time.Millisecond,
		Usage: "Delay before the first retry of a failed job; doubles per attempt up to JOB_RETRY_BACKOFF_MAX.",
	}
	// JobRetryBackoffMax is JOB_RETRY_BACKOFF_MAX.
	JobRetryBackoffMax = &Duration{
		Env: "JOB_RETRY_BACKOFF_MAX", ReadBy: WorkerOnly,
		Default: queue.DefaultRetryBackoffMax, Min: time.Millisecond,
		Usage: "Longest retry delay.",
	}
	// JobRunTimeout is JOB_RUN_TIMEOUT.
	JobRunTimeout = &Duration{
		Env: "JOB_RUN_TIMEOUT", ReadBy: WorkerOnly,
		Default: queue.DefaultJobRunTimeout, Min: time.Millisecond,
		Usage: "Longest run of one job. Keep it below the broker's consumer_timeout (30 min by default; deployments/rabbitmq/rabbitmq.conf sets 1 h).",
	}
)

// Limits per caller (pkg/ratelimit). Until API keys name callers, a caller is
// the client's address. Shared by the replicas through Redis when REDIS_URL is
// set.
var (
	// RateLimit is RATE_LIMIT.
	RateLimit = &Float{
		Env: "RATE_LIMIT", ReadBy: APIOnly,
		Default: 0, Above: 0, AtMost: 1e6, ZeroOK: true,
		Usage: "Requests per second each caller may make to POST /process, v2 infer and POST /jobs (GCRA; over it → 429 rate_limited with Retry-After). 0 turns the rate limit off.",
	}
	// RateBurst is RATE_BURST.
	RateBurst = &Int{
		Env: "RATE_BURST", ReadBy: APIOnly,
		Default: 0, Min: 0, Max: 1 << 20,
		Usage: "Requests a caller may make at once above RATE_LIMIT's pace; 0 means a second's worth (RATE_LIMIT rounded up, at least 1).",
	}
	// CallerConcurrency is CALLER_CONCURRENCY.
	CallerConcurrency = &Int{
		Env: "CALLER_CONCURRENCY", ReadBy: APIOnly,
		Default: 0, Min: 0, Max: 1 << 20,
		Usage: "Synchronous calls in flight plus jobs not yet final each caller may have (over it → 429 quota_exceeded). 0 turns the quota off.",
	}
	// QuotaLeaseTTL is QUOTA_LEASE_TTL.
	QuotaLeaseTTL = &Duration{
		Env: "QUOTA_LEASE_TTL", ReadBy: APIOnly,
		Default: api.DefaultQuotaLeaseTTL, Min: time.Second,
		Usage: "Longest a job holds a slot of its caller's CALLER_CONCURRENCY when its final state is never seen (a lost event, a crashed replica); a finished job gives its slot back at once.",
	}
)

// Tracing (OpenTelemetry). The SDK reads its other OTEL_* variables itself.
var (
	// OTLPEndpoint is OTEL_EXPORTER_OTLP_ENDPOINT.
	OTLPEndpoint = &String{
		Env: "OTEL_EXPORTER_OTLP_ENDPOINT", ReadBy: Both,
		Default: "",
		Usage:   "OpenTelemetry collector base URL (http://host:4318 for http/protobuf, http://host:4317 for grpc); traces are exported when set. Empty disables tracing at no cost. The SDK's other OTEL_* variables (headers, timeout, resource attributes) apply too.",
	}
	// OTLPProtocol is OTEL_EXPORTER_OTLP_PROTOCOL.
	OTLPProtocol = &Enum{
		Env: "OTEL_EXPORTER_OTLP_PROTOCOL", ReadBy: Both,
		Default: tracing.ProtocolHTTP, Allowed: []string{tracing.ProtocolHTTP, tracing.ProtocolGRPC},
		Usage: "http/protobuf or grpc.",
	}
	// TracesSamplerArg is OTEL_TRACES_SAMPLER_ARG.
	TracesSamplerArg = &Float{
		Env: "OTEL_TRACES_SAMPLER_ARG", ReadBy: Both,
		Default: 1, Above: 0, AtMost: 1,
		Usage: "Share of new traces recorded (0 < ratio ≤ 1); a caller's traceparent keeps its own sampling decision.",
	}
	// ServiceName is OTEL_SERVICE_NAME.
	ServiceName = &String{
		Env: "OTEL_SERVICE_NAME", ReadBy: Both,
		PerBinary: map[string]string{API: "warren-api", Worker: "warren-worker"},
		Usage:     "service.name of the exported spans.",
	}
)

// Authentication (docs/security.md).
var (
	// AuthMode is AUTH.
	AuthMode = &Enum{
		Env: "AUTH", ReadBy: APIOnly,
		Default: auth.ModeAuto, Allowed: auth.Modes,
		Usage: "`auto`: authentication is on when API_KEYS_FILE or OIDC_ISSUER is set; with neither, the API starts only on a loopback HTTP_ADDR. `none`: no authentication on any address, on purpose (a warning at start).",
	}
	// APIKeysFile is API_KEYS_FILE.
	APIKeysFile = &String{
		Env: "API_KEYS_FILE", ReadBy: APIOnly,
		Usage: "The keys file (YAML or JSON, at most 1 MiB): per key a name, the SHA-256 of the secret, the models it may call, admin, limits; and the roles a JWT may name. Re-read on change and on SIGHUP (a bad file keeps the loaded keys). `api keygen --name NAME` makes a key.",
	}
	// APIKeysInit is API_KEYS_INIT.
	APIKeysInit = &String{
		Env: "API_KEYS_INIT", ReadBy: APIOnly,
		Usage: "When set and API_KEYS_FILE does not exist yet: make it at start with one admin key of this name, and write the key's secret to API_KEYS_FILE.admin-key (both mode 0600; never logged). Compose ships with it.",
	}
	// OIDCIssuer is OIDC_ISSUER.
	OIDCIssuer = &String{
		Env: "OIDC_ISSUER", ReadBy: APIOnly,
		Usage: "An identity provider whose JWTs are accepted as Bearer tokens (their `iss`); needs OIDC_AUDIENCE and API_KEYS_FILE's roles. Empty: no JWTs.",
	}
	// OIDCAudience is OIDC_AUDIENCE.
	OIDCAudience = &String{
		Env: "OIDC_AUDIENCE", ReadBy: APIOnly,
		Usage: "The `aud` a token must carry.",
	}
	// OIDCJWKSURL is OIDC_JWKS_URL.
	OIDCJWKSURL = &String{
		Env: "OIDC_JWKS_URL", ReadBy: APIOnly,
		Usage: "The provider's signing keys (JWKS); empty: discovered at start from OIDC_ISSUER's /.well-known/openid-configuration. Cached; re-fetched for a key id not seen yet (rotation).",
	}
	// OIDCRolesClaim is OIDC_ROLES_CLAIM.
	OIDCRolesClaim = &String{
		Env: "OIDC_ROLES_CLAIM", ReadBy: APIOnly,
		Default: auth.DefaultRolesClaim,
		Usage:   "The token claim (a string or a list of strings) naming roles of API_KEYS_FILE's `roles`, which say what the token may do.",
	}
)

// Encrypted links (TLS): docs/configuration.md, "Encrypted links".
var (
	// AMQPCAFile is AMQP_CA_FILE.
	AMQPCAFile = &String{
		Env: "AMQP_CA_FILE", ReadBy: Both,
		Default: "",
		Usage:   "PEM file of the CAs the broker's certificate must chain to, for an amqps:// AMQP_URL; empty trusts the system's roots. The API also trusts it, besides the system's roots, for an https:// MANAGEMENT_URL. Verification is never turned off.",
	}
	// AMQPCertFile is AMQP_CERT_FILE.
	AMQPCertFile = &String{
		Env: "AMQP_CERT_FILE", ReadBy: Both,
		Default: "",
		Usage:   "PEM client certificate presented to the broker (amqps://), for a broker that requires one; with AMQP_KEY_FILE. Read again at every reconnect.",
	}
	// AMQPKeyFile is AMQP_KEY_FILE.
	AMQPKeyFile = &String{
		Env: "AMQP_KEY_FILE", ReadBy: Both,
		Default: "",
		Usage:   "PEM key of AMQP_CERT_FILE.",
	}
	// AMQPServerName is AMQP_SERVER_NAME.
	AMQPServerName = &String{
		Env: "AMQP_SERVER_NAME", ReadBy: Both,
		Default: "",
		Usage:   "Name the broker's certificate must carry (and the TLS SNI); empty means AMQP_URL's host.",
	}
	// TLSCertFile is TLS_CERT_FILE.
	TLSCertFile = &String{
		Env: "TLS_CERT_FILE", ReadBy: Both,
		Default: "",
		Usage:   "PEM certificate (chain) of the HTTP listener: set with TLS_KEY_FILE, HTTP_ADDR serves HTTPS only. Both files are looked at again at most once a second and a changed pair is served without a restart (a pair that does not load keeps the previous one, logged). Empty serves plain HTTP.",
	}
	// TLSKeyFile is TLS_KEY_FILE.
	TLSKeyFile = &String{
		Env: "TLS_KEY_FILE", ReadBy: Both,
		Default: "",
		Usage:   "PEM key of TLS_CERT_FILE.",
	}
	// RedisCAFile is REDIS_CA_FILE.
	RedisCAFile = &String{
		Env: "REDIS_CA_FILE", ReadBy: APIOnly,
		Default: "",
		Usage:   "PEM file of the CAs Redis's certificate must chain to, for a rediss:// REDIS_URL; empty trusts the system's roots. (A password goes in the URL: rediss://:password@host:6380/0.)",
	}
	// RedisCertFile is REDIS_CERT_FILE.
	RedisCertFile = &String{
		Env: "REDIS_CERT_FILE", ReadBy: APIOnly,
		Default: "",
		Usage:   "PEM client certificate presented to Redis (rediss://; Redis asks for one unless tls-auth-clients is no); with REDIS_KEY_FILE.",
	}
	// RedisKeyFile is REDIS_KEY_FILE.
	RedisKeyFile = &String{
		Env: "REDIS_KEY_FILE", ReadBy: APIOnly,
		Default: "",
		Usage:   "PEM key of REDIS_CERT_FILE.",
	}
)
