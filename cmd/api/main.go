// Command api is warren's HTTP front door. Configuration comes from environment
// variables with flag twins; `api help` and `api config` print them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/jobs/redisstore"
	"github.com/warren-farm/warren/pkg/ratelimit"
	"github.com/warren-farm/warren/pkg/ratelimit/redislimit"
	"github.com/warren-farm/warren/pkg/tlsconfig"
	"github.com/warren-farm/warren/pkg/tracing"
)

func main() {
	cli.Command[settings]{
		Name:    config.API,
		Summary: "warren's HTTP front door: /process, the Open Inference Protocol (v2) and jobs, over RabbitMQ",
		Load:    load,
		Run:     run,
		Subcommands: []cli.Subcommand{
			{Name: "keygen", Args: "--name NAME [--models 'a,b*'] [--admin]",
				Usage: "make an API key: print the secret once and the entry for API_KEYS_FILE",
				Run:   func(p cli.Process) int { return auth.Keygen(p.Args[1:], p.Stdout, p.Stderr) }},
			{Name: "deadletters", Args: "list|show|replay|discard",
				Usage: "the dead-letter admin calls over HTTP (api deadletters help)", Run: cli.DeadLetters},
			{Name: "queues", Args: "retype [--type=classic|quorum] QUEUE…",
				Usage: "convert request queues to another type on a live farm (api queues help)", Run: cli.Queues},
		},
	}.Main()
}

// settings is what the API's variables say.
type settings struct {
	listener                       cli.Listener
	dataDir, redisURL, redisPrefix string
	redisTLS                       tlsconfig.Client
	jobTTL                         time.Duration
	auth                           auth.Config
	api                            api.Config
}

func load(l *config.Loader) settings {
	s := settings{
		listener:    cli.LoadListener(l),
		dataDir:     config.DataDir.Load(l),
		redisURL:    config.RedisURL.Load(l),
		redisPrefix: config.RedisPrefix.Load(l),
		jobTTL:      config.JobTTL.Load(l),
		auth: auth.Config{
			Mode:      config.AuthMode.Load(l),
			KeysFile:  config.APIKeysFile.Load(l),
			InitAdmin: config.APIKeysInit.Load(l),
			JWT: auth.JWTConfig{
				Issuer:     config.OIDCIssuer.Load(l),
				Audience:   config.OIDCAudience.Load(l),
				JWKSURL:    config.OIDCJWKSURL.Load(l),
				RolesClaim: config.OIDCRolesClaim.Load(l),
			},
		},
		api: api.Config{
			AMQP:              cli.LoadBroker(l),
			ManagementURL:     config.ManagementURL.Load(l),
			QueueMaxLength:    config.QueueMaxLength.Load(l),
			RequestTimeout:    config.RequestTimeout.Load(l),
			MaxRequestTimeout: config.MaxRequestTimeout.Load(l),
			BodyLimit:         config.BodyLimit.Load(l),
			DrainTimeout:      config.DrainTimeout.Load(l),
			DefaultModel:      config.DefaultModel.Load(l),
			AdminAPI:          config.AdminAPI.Load(l),
			Capacity: capacity.Config{
				TargetUtilization: config.ScaleTargetUtilization.Load(l),
				TargetWait:        config.ScaleTargetWait.Load(l),
			},
			Jobs: api.JobsConfig{
				MaxWait:      config.MaxWait.Load(l),
				StartTimeout: config.JobStartTimeout.Load(l),
			},
			CallerLimits: ratelimit.Limits{
				Rate:        config.RateLimit.Load(l),
				Burst:       config.RateBurst.Load(l),
				Concurrency: config.CallerConcurrency.Load(l),
			},
			QuotaLeaseTTL: config.QuotaLeaseTTL.Load(l),
		},
	}
	s.redisTLS = cli.LoadRedisTLS(l, s.redisURL)
	l.Check(s.redisURL == "" && s.dataDir == "", config.DataDir, "must be set when REDIS_URL is empty")
	l.Check(s.api.MaxRequestTimeout < s.api.RequestTimeout, config.MaxRequestTimeout, "must be at least REQUEST_TIMEOUT")
	l.Check(s.auth.Mode == auth.ModeNone && (s.auth.KeysFile != "" || s.auth.JWT.Issuer != ""), config.AuthMode,
		"is none, but API_KEYS_FILE or OIDC_ISSUER is set")
	l.Check(s.auth.InitAdmin != "" && s.auth.KeysFile == "", config.APIKeysInit, "needs API_KEYS_FILE (where to write the keys)")
	l.Check(s.auth.JWT.Issuer != "" && s.auth.JWT.Audience == "", config.OIDCAudience, "must be set with OIDC_ISSUER")
	l.Check(s.auth.JWT.Issuer != "" && s.auth.KeysFile == "", config.APIKeysFile, "must be set with OIDC_ISSUER (its roles say what a token may do)")
	return s
}

func run(ctx context.Context, s settings, log *slog.Logger, tr *tracing.Tracing) error {
	ac := s.auth
	ac.Logger = log
	authn, err := auth.New(ctx, ac)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	store, err := openStore(ctx, s, log)
	if err != nil {
		return err
	}
	cfg := s.api
	cfg.Logger, cfg.Tracing, cfg.Jobs.Store, cfg.Auth = log, tr, store, authn
	if cfg.Capacity.HTTPClient, err = cli.ManagementClient(cfg.ManagementURL, cfg.AMQP); err != nil {
		_ = store.Close()
		return err
	}
	if s.redisURL != "" && (!cfg.CallerLimits.Off() || authn.Enabled()) {
		// The replicas share the limits (the defaults', or the API keys' own)
		// through the job store's Redis.
		if cfg.Limiter, err = redislimit.New(redislimit.Config{URL: s.redisURL, Prefix: s.redisPrefix, TLS: s.redisTLS}); err != nil {
			_ = store.Close()
			return fmt.Errorf("REDIS_URL: %w", err)
		}
	}
	if !cfg.CallerLimits.Off() {
		log.Info("limits per caller", "rate", cfg.CallerLimits.Rate, "burst", cfg.CallerLimits.Burst,
			"concurrency", cfg.CallerLimits.Concurrency, "shared", s.redisURL != "")
	}
	srv, err := api.New(cfg) // owns the store from here on
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	ln, err := s.listener.Listen(log)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(sctx) // releases the store
		return err
	}
	if err := authn.CheckExposure(ln.Addr().String()); err != nil {
		_ = ln.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(sctx)
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	// SIGHUP re-reads the keys file (as a change to it does).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	go func() {
		for {
			select {
			case <-hctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the keys file")
				_ = authn.Reload()
			}
		}
	}()
	return srv.Run(ctx, ln)
}

// openStore opens the Redis job store when REDIS_URL is set, else the embedded one
// under DATA_DIR.
func openStore(ctx context.Context, s settings, log *slog.Logger) (jobs.Store, error) {
	if s.redisURL != "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := redisstore.OpenRedis(ctx, redisstore.RedisConfig{URL: s.redisURL, TLS: s.redisTLS, Prefix: s.redisPrefix, TTL: s.jobTTL, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		log.Info("job store: redis", "url", redactURL(s.redisURL))
		return st, nil
	}
	if err := os.MkdirAll(s.dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	path := filepath.Join(s.dataDir, "jobs.db")
	st, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: path, TTL: s.jobTTL, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	log.Info("job store: embedded", "path", path)
	return st, nil
}

// redactURL drops the password from a URL for logging.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
