// Command orders stores orders that arrive on a NATS Streaming channel in
// PostgreSQL, keeps them all in memory, and serves them over HTTP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// lookupReaders is how many reads of single orders may be under way at
// once; each carries every request that came in meanwhile. Fewer readers
// make larger batches; four measured best on two cores at 5 and at 64
// concurrent clients.
const lookupReaders = 4

// Time allowed for each step of a graceful shutdown, and for the server's
// own timeouts.
const (
	httpShutdownTimeout = 10 * time.Second
	// How long after the signal ingestion and the change log get to
	// stop. A batch still waiting for the database then is left
	// unacknowledged, and the streaming server delivers it again.
	stopTimeout       = 10 * time.Second
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeoutHTTP  = 60 * time.Second
	idleTimeout       = 120 * time.Second
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

// run starts the service and blocks until ctx is done or SIGINT or
// SIGTERM arrives, then shuts it down in the reverse order of start-up.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", "config", cfg)
	if cfg.APIToken == "" {
		log.Warn("API_TOKEN is not set: anyone who reaches the API can create and delete orders; fine for local development, not for production")
	}

	// Listen before anything slow, so a taken port fails at once and
	// /healthz answers while the database is awaited.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listening on -http-addr (HTTP_ADDR) %s: %w", cfg.HTTPAddr, err)
	}
	defer ln.Close()

	store, err := NewStore(cfg.DatabaseURL, cfg.DBMaxConns)
	if err != nil {
		return err
	}
	// Instances that share the stream share the database: each must learn
	// of the others' changes.
	store.logging = cfg.Stream.QueueGroup != ""
	defer func() {
		store.Close()
		log.Info("database closed")
	}()
	cache := &Cache{}
	metrics := newMetrics(args, cache.Len)
	svc := NewService(store, cache)
	ingester := NewIngester(cfg.Stream, svc, log, metrics)
	srv := &server{
		log:      log,
		metrics:  metrics,
		store:    store,
		cache:    cache,
		svc:      svc,
		ingester: ingester,
		// One more worker than connections, so that a readiness check
		// finds one while every connection is busy.
		workers:     startDBWorkers(cfg.DBMaxConns + 1),
		lookups:     startLookups(store, max(1, min(lookupReaders, cfg.DBMaxConns-1)), cfg.DBTimeout),
		dbTimeout:   cfg.DBTimeout,
		maxBody:     cfg.MaxBodyBytes,
		token:       newAPIToken(cfg.APIToken),
		logRequests: cfg.LogRequests,
		pprof:       cfg.Pprof,
	}

	httpSrv := &http.Server{
		Handler:           srv.routes(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeoutHTTP,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String())

	streamDone, err := start(ctx, log, getenv, store, svc, srv, ingester)
	if err != nil && ctx.Err() != nil {
		err = nil // asked to stop while starting
	}
	if err == nil && streamDone != nil {
		select {
		case <-ctx.Done():
		case err = <-httpErr:
			err = fmt.Errorf("serving http: %w", err)
		}
	}

	log.Info("shutting down")
	stopBy := time.Now().Add(stopTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if serr := httpSrv.Shutdown(shutdownCtx); serr != nil {
		log.Warn("http shutdown", "err", serr)
	}
	log.Info("http stopped")
	close(srv.workers.jobs)
	close(srv.lookups.reqs)
	if streamDone != nil {
		stop()
		t := time.NewTimer(time.Until(stopBy))
		defer t.Stop()
		select {
		case <-streamDone:
		case <-t.C:
			log.Warn("ingestion did not stop in time; the messages it had not acknowledged will be delivered again")
		}
	}
	return err
}

// start connects the database, loads the cache, and starts following the
// change log and ingesting from the stream. It returns a channel closed
// when both have stopped, which they do once ctx is done.
func start(ctx context.Context, log *slog.Logger, getenv func(string) string, store *Store, svc *Service, srv *server, in *Ingester) (<-chan struct{}, error) {
	if err := openStore(ctx, log, store); err != nil {
		return nil, err
	}
	srv.dbReady.Store(true)

	t0 := time.Now()
	f, at, err := loadCache(ctx, log, svc, srv.metrics)
	if err != nil {
		return nil, err
	}
	srv.cacheReady.Store(true)
	log.Info("cache loaded", "orders", srv.cache.Len(), "took", time.Since(t0).Round(time.Millisecond))

	var wg sync.WaitGroup
	if getenv("GOGC") == "" {
		wg.Go(func() { tuneGC(ctx, srv.cache) })
	}
	if f != nil {
		f.setCursor(at)
		wg.Go(func() { f.run(ctx) })
	}
	wg.Go(func() { svc.recheck(ctx, log) })
	wg.Go(func() { in.Run(ctx) })
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done, nil
}

// The garbage collector's target, while GOGC is not set: the heap may
// grow past its live data by gcHeadroom before a collection, but by no
// more than 100% of it and no less than 10%.
const (
	gcHeadroom = 128 << 20
	gcCheck    = time.Second
)

// tuneGC sets the garbage collector's target from the cache's size every
// gcCheck until ctx is done. With few orders cached the usual 100% costs
// little memory and spares collections while orders pour in; with many,
// 100% would double the process, and the cache holds no pointers, so
// collecting it more often costs little.
func tuneGC(ctx context.Context, c *Cache) {
	t := time.NewTicker(gcCheck)
	defer t.Stop()
	percent := 100
	for {
		want := 100
		if n := c.Bytes(); n > 0 {
			want = min(100, max(10, 100*gcHeadroom/n))
		}
		if want != percent {
			percent = want
			debug.SetGCPercent(percent)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openStore prepares the database, waiting for it while it is unavailable,
// so the service and its database can be started in any order.
func openStore(ctx context.Context, log *slog.Logger, store *Store) error {
	backoff := minBackoff
	for {
		err := store.Init(ctx)
		if err == nil {
			log.Info("database connected")
			return nil
		}
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		if first := backoff == minBackoff; first {
			log.Warn("database unavailable; waiting for it (is PostgreSQL running? scripts/services.sh start runs one)", "err", err, "retry_in", backoff)
		} else {
			log.Warn("database unavailable", "err", err, "retry_in", backoff)
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// durationText writes durations in JSON logs as the text logs do ("2s"),
// rather than as slog's default count of nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// loadCache fills the cache and, when instances share the database,
// starts following the change log from where the load read it. While the
// database is unavailable it waits and starts again, so that a database
// restarting while the service starts does not stop it.
func loadCache(ctx context.Context, log *slog.Logger, svc *Service, m *Metrics) (*follower, cursor, error) {
	backoff := minBackoff
	for {
		f, at, err := loadOnce(ctx, log, svc, m)
		if err == nil {
			return f, at, nil
		}
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return nil, cursor{}, fmt.Errorf("loading cache: %w", err)
		}
		log.Warn("loading cache failed", "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return nil, cursor{}, ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func loadOnce(ctx context.Context, log *slog.Logger, svc *Service, m *Metrics) (*follower, cursor, error) {
	var f *follower
	if svc.store.logging {
		var err error
		if f, err = svc.startFollowing(ctx, log, m); err != nil {
			return nil, cursor{}, err
		}
	}
	at, err := svc.Load(ctx)
	if err != nil && f != nil {
		f.abandon()
		f = nil
	}
	return f, at, err
}

// newLogger builds the one logger the service passes down.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		opts.ReplaceAttr = durationText
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
