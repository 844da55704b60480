package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Config is the service's whole configuration.
type Config struct {
	HTTPAddr     string
	DatabaseURL  string
	DBMaxConns   int
	DBTimeout    time.Duration
	MaxBodyBytes int64
	LogFormat    string
	LogLevel     slog.Level
	LogRequests  bool
	Pprof        bool
	APIToken     string
	Stream       StreamConfig
}

// A setting ties a flag to the environment variable of the same meaning.
type setting struct {
	flag, env string
}

// parseConfig reads the configuration from the command line and, for
// each setting no flag gave, from the environment, so a flag overrides
// its variable. It returns flag.ErrHelp
// after printing usage for -h.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	// Parse errors are returned, and printed once by the caller; only
	// -h prints the usage.
	fs.SetOutput(io.Discard)
	var settings []setting
	define := func(name, env string, register func(name, usage string), usage string) {
		register(name, usage+" (env "+env+")")
		settings = append(settings, setting{name, env})
	}
	str := func(p *string, def string) func(string, string) {
		return func(name, usage string) { fs.StringVar(p, name, def, usage) }
	}
	num := func(p *int, def int) func(string, string) {
		return func(name, usage string) { fs.IntVar(p, name, def, usage) }
	}
	dur := func(p *time.Duration, def time.Duration) func(string, string) {
		return func(name, usage string) { fs.DurationVar(p, name, def, usage) }
	}

	define("http-addr", "HTTP_ADDR", str(&c.HTTPAddr, ":8000"), "`address` the HTTP API listens on")
	define("database-url", "DATABASE_URL", str(&c.DatabaseURL, "postgres://orders:orders@localhost:5432/orders?sslmode=disable"), "PostgreSQL connection `URL`")
	define("db-max-conns", "DB_MAX_CONNS", num(&c.DBMaxConns, 10), "most database connections the service opens; keep below the server's max_connections")
	define("db-timeout", "DB_TIMEOUT", dur(&c.DBTimeout, 2*time.Second), "how long an API request may wait for the database before it gets 503")
	define("max-body-bytes", "MAX_BODY_BYTES", func(name, usage string) { fs.Int64Var(&c.MaxBodyBytes, name, 1<<20, usage) }, "largest request body accepted; larger ones get 413")
	define("log-format", "LOG_FORMAT", str(&c.LogFormat, "text"), "log format: text or json")
	define("log-level", "LOG_LEVEL", func(name, usage string) { fs.TextVar(&c.LogLevel, name, slog.LevelInfo, usage) }, "least level logged: debug, info, warn or error")
	define("log-requests", "LOG_REQUESTS", func(name, usage string) { fs.BoolVar(&c.LogRequests, name, false, usage) }, "log every HTTP request: method, path, status, duration")
	define("pprof", "PPROF", func(name, usage string) { fs.BoolVar(&c.Pprof, name, false, usage) }, "serve net/http/pprof profiles under /debug/pprof/")
	define("api-token", "API_TOKEN", str(&c.APIToken, ""), "bearer token that POST, DELETE, /api/rejected and /debug/ need; empty leaves them open (prefer the variable: a flag shows in ps)")
	define("nats-url", "NATS_URL", str(&c.Stream.URL, "nats://localhost:4222"), "NATS server `URL`")
	define("nats-cluster-id", "NATS_CLUSTER_ID", str(&c.Stream.ClusterID, "test-cluster"), "NATS Streaming cluster id")
	define("nats-client-id", "NATS_CLIENT_ID", str(&c.Stream.ClientID, "orders-service"), "NATS Streaming client id; unique per running instance and stable across restarts")
	define("nats-channel", "NATS_CHANNEL", str(&c.Stream.Channel, "orders"), "channel orders arrive on")
	define("nats-durable", "NATS_DURABLE", str(&c.Stream.Durable, "orders-service"), "durable subscription name; the position in the channel is kept under it")
	define("nats-queue-group", "NATS_QUEUE_GROUP", str(&c.Stream.QueueGroup, ""), "queue group shared by several instances, each with its own client id; empty for a single instance")
	define("batch-size", "BATCH_SIZE", num(&c.Stream.BatchSize, 1000), "most orders written to the database in one transaction")
	define("batch-wait", "BATCH_WAIT", dur(&c.Stream.BatchWait, 5*time.Millisecond), "longest an order waits for its batch to fill")
	define("ack-wait", "ACK_WAIT", dur(&c.Stream.AckWait, 30*time.Second), "how long the streaming server waits for an acknowledgement before redelivering")
	define("max-inflight", "MAX_INFLIGHT", num(&c.Stream.MaxInflight, 4096), "most unacknowledged messages the streaming server hands over")

	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(output, "Usage: orders [flags]\n\n")
			fmt.Fprintln(output, "Stores orders from a NATS Streaming channel in PostgreSQL and serves them over HTTP.")
			fmt.Fprintln(output, "Every flag may be set instead by the environment variable named in its description;")
			fmt.Fprintln(output, "a flag given on the command line wins. GOGC, if set, replaces the service's own")
			fmt.Fprint(output, "tuning of the garbage collector to the cache's size.\n\n")
			fs.SetOutput(output)
			fs.PrintDefaults()
			return c, err
		}
		return c, fmt.Errorf("%v (run with -h for every setting)", explainFlag(fs, err))
	}
	if fs.NArg() > 0 {
		// Not echoed: what follows could be a secret.
		return c, fmt.Errorf("%d unexpected arguments after the flags; a boolean flag takes -flag=false, not -flag false", fs.NArg())
	}

	// The environment fills in what the command line left unset, so a
	// variable that a flag overrides is not even read.
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		v := getenv(s.env)
		if v == "" || given[s.flag] {
			continue
		}
		if err := fs.Set(s.flag, v); err != nil {
			return c, fmt.Errorf("invalid %s %q: %v", s.env, v, explain(fs.Lookup(s.flag), err))
		}
	}
	return c, c.validate()
}

// badFlagValue matches the flag package's messages for a value given on
// the command line that it could not parse, up to the reason. Should they
// change, the messages are passed on as they are.
var badFlagValue = regexp.MustCompile(`^invalid (?:boolean )?value ".*" for (?:flag )?-([a-z-]+): `)

// explainFlag gives a command-line parse error the same reason explain
// gives an environment variable's.
func explainFlag(fs *flag.FlagSet, err error) error {
	m := badFlagValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	f := fs.Lookup(m[1])
	if f == nil {
		return err
	}
	return fmt.Errorf("%s%v", m[0], explain(f, errors.New(strings.TrimPrefix(err.Error(), m[0]))))
}

// explain makes a flag package parse error say what was wanted.
func explain(f *flag.Flag, err error) error {
	switch {
	case f.Name == "log-level":
		return errors.New("want debug, info, warn or error")
	case strings.Contains(err.Error(), "parse error") && isDuration(f):
		return errors.New("want a duration such as 500ms, 5s or 1m")
	case strings.Contains(err.Error(), "parse error") && (f.DefValue == "true" || f.DefValue == "false"):
		return errors.New("want true or false")
	case strings.Contains(err.Error(), "parse error"):
		return errors.New("want a whole number")
	}
	return err
}

func isDuration(f *flag.Flag) bool {
	_, err := time.ParseDuration(f.DefValue)
	return err == nil
}

// validate checks the values no flag type checks. It names each setting
// by its flag and its variable, since either may have set it.
func (c *Config) validate() error {
	var errs []error
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	positiveTime := func(name string, v time.Duration) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, v))
		}
	}
	positive("-db-max-conns (DB_MAX_CONNS)", int64(c.DBMaxConns))
	positiveTime("-db-timeout (DB_TIMEOUT)", c.DBTimeout)
	positive("-max-body-bytes (MAX_BODY_BYTES)", c.MaxBodyBytes)
	positive("-batch-size (BATCH_SIZE)", int64(c.Stream.BatchSize))
	positiveTime("-batch-wait (BATCH_WAIT)", c.Stream.BatchWait)
	positive("-max-inflight (MAX_INFLIGHT)", int64(c.Stream.MaxInflight))
	if c.Stream.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("-ack-wait (ACK_WAIT) must be at least 1s, got %s", c.Stream.AckWait))
	}
	if c.Stream.MaxInflight < c.Stream.BatchSize {
		errs = append(errs, fmt.Errorf("-max-inflight (MAX_INFLIGHT) is %d, less than -batch-size (BATCH_SIZE) %d, so batches could never fill", c.Stream.MaxInflight, c.Stream.BatchSize))
	}
	if err := checkListenAddr(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("-http-addr (HTTP_ADDR): %w", err))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format (LOG_FORMAT) must be text or json, got %q", c.LogFormat))
	}
	if c.APIToken != strings.TrimSpace(c.APIToken) {
		errs = append(errs, errors.New("-api-token (API_TOKEN) starts or ends with white space, which no client could send"))
	}
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("-database-url (DATABASE_URL): %w", err))
	}
	if err := checkNATSURL(c.Stream.URL); err != nil {
		errs = append(errs, fmt.Errorf("-nats-url (NATS_URL): %w", err))
	}
	if c.Stream.QueueGroup != "" && !isClientID(c.Stream.QueueGroup) {
		errs = append(errs, fmt.Errorf("-nats-queue-group (NATS_QUEUE_GROUP) must be letters, digits, '-' and '_', got %q", c.Stream.QueueGroup))
	}
	for _, s := range []struct {
		name, v string
		ok      func(string) bool
		want    string
	}{
		{"-nats-cluster-id (NATS_CLUSTER_ID)", c.Stream.ClusterID, isToken, "letters, digits, '-', '_' and '.'"},
		{"-nats-client-id (NATS_CLIENT_ID)", c.Stream.ClientID, isClientID, "letters, digits, '-' and '_'"},
		{"-nats-channel (NATS_CHANNEL)", c.Stream.Channel, isToken, "letters, digits, '-', '_' and '.'"},
		{"-nats-durable (NATS_DURABLE)", c.Stream.Durable, isClientID, "letters, digits, '-' and '_'"},
	} {
		if !s.ok(s.v) {
			errs = append(errs, fmt.Errorf("%s must be non-empty %s, got %q", s.name, s.want, s.v))
		}
	}
	return errors.Join(errs...)
}

// isClientID accepts what NATS Streaming takes as a client id.
func isClientID(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
}

// isToken accepts a NATS subject of plain tokens: no spaces, no wildcards,
// no empty token.
func isToken(s string) bool {
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	return isClientID(strings.ReplaceAll(s, ".", ""))
}

// checkListenAddr checks an address to listen on: an optional host and
// a port number, as in :8000 or 127.0.0.1:8000.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port or :port, such as :8000, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("want a port number from 0 to 65535, got %q", port)
	}
	return nil
}

// checkNATSURL checks a NATS server URL, or a comma-separated list of
// them for a cluster.
func checkNATSURL(list string) error {
	for _, s := range strings.Split(list, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			return errors.New("want a URL such as nats://localhost:4222")
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("want a nats:// or tls:// URL, got a %s:// one", u.Scheme)
		}
	}
	return nil
}

// checkDatabaseURL checks that lib/pq can parse a connection string,
// without echoing it: parse errors quote the string, password and all.
func checkDatabaseURL(dsn string) error {
	if scheme, _, ok := strings.Cut(dsn, "://"); ok && scheme != "postgres" && scheme != "postgresql" {
		return fmt.Errorf("want a postgres:// URL, got a %s:// one", scheme)
	}
	if _, err := pq.NewConnector(dsn); err != nil {
		return errors.New("not a valid postgres:// URL or key=value connection string")
	}
	return nil
}

// LogValue lists the configuration for the start-up log line, with
// secrets redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("database_url", redactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.Duration("db_timeout", c.DBTimeout),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.String("nats_url", redactURL(c.Stream.URL)),
		slog.String("nats_cluster_id", c.Stream.ClusterID),
		slog.String("nats_client_id", c.Stream.ClientID),
		slog.String("nats_channel", c.Stream.Channel),
		slog.String("nats_durable", c.Stream.Durable),
		slog.String("nats_queue_group", c.Stream.QueueGroup),
		slog.Int("batch_size", c.Stream.BatchSize),
		slog.Duration("batch_wait", c.Stream.BatchWait),
		slog.Duration("ack_wait", c.Stream.AckWait),
		slog.Int("max_inflight", c.Stream.MaxInflight),
		slog.String("log_format", c.LogFormat),
		slog.String("log_level", c.LogLevel.String()),
		slog.Bool("log_requests", c.LogRequests),
		slog.Bool("pprof", c.Pprof),
		slog.String("api_token", redactSecret(c.APIToken)),
	)
}

// redactSecret shows whether a secret is set, not what it is.
func redactSecret(s string) string {
	if s == "" {
		return "(none)"
	}
	return "xxxxx"
}

var passwordParam = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)

// redactURL hides the credentials in a connection URL: the password of a
// postgres:// or nats:// URL, a bare NATS token, and password=... in a
// key=value connection string. A comma-separated list of URLs, as for a
// NATS cluster, has each redacted.
func redactURL(s string) string {
	if strings.Contains(s, ",") && strings.Contains(s, "://") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redactOne(p)
		}
		return strings.Join(parts, ",")
	}
	return redactOne(s)
}

func redactOne(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return passwordParam.ReplaceAllString(s, "${1}xxxxx")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			u.User = url.User("xxxxx") // a NATS token
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
