package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/stan.go"
)

// The integration tests run against real PostgreSQL and NATS Streaming
// servers that TestMain starts on ports of their own. Each test gets its
// own database and channel, so tests do not see each other's orders.
//
// Without the server binaries the integration tests skip, unless
// ORDERS_REQUIRE_INTEGRATION=1 (scripts/test.sh sets it), which makes a
// missing server a failure.

const (
	testPGPassword   = "pg-secret-4e1d"
	testClusterID    = "test-cluster"
	startTimeout     = 60 * time.Second
	eventualDeadline = 30 * time.Second
)

var (
	testPG      *pgServer
	testNATS    *natsServer
	harnessErr  error // why the integration tests cannot run
	harnessDir  string
	uniqueCount atomic.Int64
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if testing.Short() {
		harnessErr = errors.New("integration tests are off in -short mode")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "orders-test-")
	if err != nil {
		harnessErr = err
		return m.Run()
	}
	harnessDir = dir
	defer os.RemoveAll(dir)
	// The postgres user must reach its folder inside.
	os.Chmod(dir, 0o755)

	if testPG, harnessErr = newPGServer(filepath.Join(dir, "pg")); harnessErr == nil {
		defer testPG.stop()
		if testNATS, harnessErr = newNATSServer(filepath.Join(dir, "nats")); harnessErr == nil {
			defer testNATS.stop()
		}
	}
	return m.Run()
}

// needIntegration skips or fails t when the servers are not running.
func needIntegration(t testing.TB) {
	t.Helper()
	if harnessErr == nil {
		return
	}
	if os.Getenv("ORDERS_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration servers unavailable: %v", harnessErr)
	}
	t.Skipf("integration servers unavailable: %v", harnessErr)
}

// unique returns a name no other test in this run uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), uniqueCount.Add(1))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls cond until it returns nil or the deadline passes, and
// returns the last error.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually fails t unless cond returns nil within the usual deadline.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := waitFor(eventualDeadline, cond); err != nil {
		t.Fatalf("%s: still failing after %s: %v", what, eventualDeadline, err)
	}
}

// process is a server process the tests start, stop and kill.
type process struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

func startProcess(name, logPath string, cred *syscall.Credential, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The servers die with the test binary, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan struct{}), log: logFile}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// signal sends sig and waits for the process to exit.
func (p *process) signal(sig syscall.Signal) error {
	if p == nil {
		return nil
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(startTimeout):
		p.cmd.Process.Kill()
		return fmt.Errorf("%s did not exit after %v", p.name, sig)
	}
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// pgServer is a PostgreSQL server in a folder of its own.
type pgServer struct {
	bin   string
	data  string
	port  int
	extra []string            // more server options, as -c name=value pairs
	cred  *syscall.Credential // the postgres user, when the tests run as root
	proc  *process
}

func findPGBin() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin or PATH (set PG_BIN)")
}

func pgVersion(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func newPGServer(dir string) (*pgServer, error) {
	bin, err := findPGBin()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &pgServer{bin: bin, data: filepath.Join(dir, "data"), port: port}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}

	// PostgreSQL refuses to run as root; run it as the postgres user.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}

	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(testPGPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.cred != nil {
		os.Chown(pwFile, int(s.cred.Uid), int(s.cred.Gid))
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "orders",
		"--pwfile", pwFile, "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	return s, s.start()
}

// start starts the server and waits until it accepts connections.
func (s *pgServer) start() error {
	args := append([]string{"-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="},
		append([]string{"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"}, s.extra...)...)
	proc, err := startProcess("postgres", s.data+".log", s.cred, filepath.Join(s.bin, "postgres"), args...)
	if err != nil {
		return err
	}
	s.proc = proc
	err = waitFor(startTimeout, func() error {
		if !proc.running() {
			return fmt.Errorf("postgres exited; see %s.log", s.data)
		}
		db, err := sql.Open("postgres", s.dsn("postgres"))
		if err != nil {
			return err
		}
		defer db.Close()
		return db.Ping()
	})
	if err != nil {
		proc.signal(syscall.SIGKILL)
	}
	return err
}

// stop shuts the server down cleanly.
func (s *pgServer) stop() error {
	return s.proc.signal(syscall.SIGINT) // fast shutdown
}

// kill kills the server the way a crash would.
func (s *pgServer) kill() error {
	return s.proc.signal(syscall.SIGKILL)
}

// freeze stops every process of the server without closing a connection,
// as a hung host would; thaw lets them go on. Each backend runs in a
// session of its own, so they are found by their parent.
func (s *pgServer) freeze() error { return s.signalAll(syscall.SIGSTOP) }
func (s *pgServer) thaw() error   { return s.signalAll(syscall.SIGCONT) }

func (s *pgServer) signalAll(sig syscall.Signal) error {
	pid := s.proc.cmd.Process.Pid
	// The postmaster first, so that it starts no backend meanwhile.
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			syscall.Kill(child, sig)
		}
	}
	return nil
}

func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://orders:%s@127.0.0.1:%d/%s?sslmode=disable", testPGPassword, s.port, db)
}

// createDB creates an empty database for one test and returns its DSN.
func (s *pgServer) createDB(t testing.TB) string {
	t.Helper()
	name := unique("t")
	db, err := sql.Open("postgres", s.dsn("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	return s.dsn(name)
}

// natsServer is a NATS Streaming server with a file store.
type natsServer struct {
	bin     string
	dir     string
	port    int
	monitor int      // HTTP monitoring port
	extra   []string // more server flags
	user    string   // credentials clients need, if set
	pass    string
	proc    *process
}

func findNATSBin() (string, error) {
	if p := os.Getenv("NATS_STREAMING_SERVER"); p != "" {
		return p, nil
	}
	if wd, err := os.Getwd(); err == nil {
		p := filepath.Join(wd, ".tools", "bin", "nats-streaming-server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("nats-streaming-server"); err == nil {
		return p, nil
	}
	return "", errors.New("no nats-streaming-server in .tools/bin or PATH (scripts/services.sh start installs it)")
}

func newNATSServer(dir string) (*natsServer, error) {
	return newNATSServerWith(dir, "", "")
}

// newNATSServerWith starts a server that, with a user, admits only that
// user with that password.
func newNATSServerWith(dir, user, pass string) (*natsServer, error) {
	bin, err := findNATSBin()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	monitor, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &natsServer{bin: bin, dir: dir, port: port, monitor: monitor, user: user, pass: pass}
	return s, s.start()
}

// start starts the server on its port and store and waits until a client
// can connect.
func (s *natsServer) start() error {
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-m", strconv.Itoa(s.monitor),
		"-cid", testClusterID, "-store", "file", "-dir", filepath.Join(s.dir, "store"), "--file_sync=false",
		"-max_msgs", "0", "-max_bytes", "0", "-max_age", "0s",
		// Notice a killed client within a couple of seconds.
		"-hbi", "500ms", "-hbt", "500ms", "-hbf", "3"}, s.extra...)
	if s.user != "" {
		args = append(args, "--user", s.user, "--pass", s.pass)
	}
	proc, err := startProcess("nats-streaming-server", s.dir+".log", nil, s.bin, args...)
	if err != nil {
		return err
	}
	s.proc = proc
	err = waitFor(startTimeout, func() error {
		if !proc.running() {
			return fmt.Errorf("nats-streaming-server exited; see %s.log", s.dir)
		}
		sc, err := stan.Connect(testClusterID, unique("probe"), stan.NatsURL(s.clientURL()), stan.ConnectWait(time.Second))
		if err != nil {
			return err
		}
		return sc.Close()
	})
	if err != nil {
		proc.signal(syscall.SIGKILL)
	}
	return err
}

func (s *natsServer) stop() error { return s.proc.signal(syscall.SIGTERM) }

// pending returns how many messages of the channel the durable
// subscription has been sent but has not acknowledged, from the server's
// monitoring endpoint.
func (s *natsServer) pending(channel string) (int, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/streaming/channelsz?channel=%s&subs=1", s.monitor, channel))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ch struct {
		Subscriptions []struct {
			PendingCount int `json:"pending_count"`
		} `json:"subscriptions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ch); err != nil {
		return 0, err
	}
	n := 0
	for _, sub := range ch.Subscriptions {
		n += sub.PendingCount
	}
	return n, nil
}
func (s *natsServer) kill() error { return s.proc.signal(syscall.SIGKILL) }
func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// clientURL is the URL a client uses, credentials included.
func (s *natsServer) clientURL() string {
	if s.user == "" {
		return s.url()
	}
	return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", s.user, s.pass, s.port)
}

// testEnv is one test's slice of the servers: a database and a channel.
type testEnv struct {
	vars map[string]string
	pg   *pgServer
	nats *natsServer
}

// newTestEnv gives t a fresh database and channel and the settings that
// point a service at them.
func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	needIntegration(t)
	return newTestEnvOn(t, testPG, testNATS)
}

// newPrivateEnv starts a PostgreSQL and a NATS Streaming server for t
// alone, for tests that stop, kill or restart them.
func newPrivateEnv(t testing.TB) *testEnv {
	t.Helper()
	return newPrivateEnvWith(t, "", "")
}

// newPrivateEnvWith is newPrivateEnv with a NATS server that admits only
// the given user, if one is given.
func newPrivateEnvWith(t testing.TB, natsUser, natsPass string) *testEnv {
	t.Helper()
	needIntegration(t)
	dir, err := os.MkdirTemp(harnessDir, "private-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	pg, err := newPGServer(filepath.Join(dir, "pg"))
	if err != nil {
		t.Fatalf("starting a private PostgreSQL: %v", err)
	}
	t.Cleanup(func() { pg.stop() })
	nats, err := newNATSServerWith(filepath.Join(dir, "nats"), natsUser, natsPass)
	if err != nil {
		t.Fatalf("starting a private NATS Streaming: %v", err)
	}
	t.Cleanup(func() { nats.stop() })
	return newTestEnvOn(t, pg, nats)
}

func newTestEnvOn(t testing.TB, pg *pgServer, nats *natsServer) *testEnv {
	t.Helper()
	return &testEnv{pg: pg, nats: nats, vars: map[string]string{
		"DATABASE_URL":    pg.createDB(t),
		"NATS_URL":        nats.clientURL(),
		"NATS_CLUSTER_ID": testClusterID,
		"NATS_CHANNEL":    unique("orders"),
		"NATS_CLIENT_ID":  unique("svc"),
		"NATS_DURABLE":    "orders-service",
		"LOG_LEVEL":       "debug",
	}}
}

// db opens the test's database.
// store opens a Store on the environment's database, with its schema
// in place, closed when the test ends.
func (e *testEnv) store(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(e.vars["DATABASE_URL"], 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *testEnv) db(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", e.vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// testService is the service running in-process through run.
type testService struct {
	base   string
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// start runs the service with the environment's settings, plus extra
// ones, and waits until it is ready.
func (e *testEnv) start(t testing.TB, extra ...string) *testService {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", port)}
	for k, v := range e.vars {
		vars[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &testService{base: "http://" + vars["HTTP_ADDR"], logs: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- run(ctx, []string{"orders"}, func(k string) string { return vars[k] }, io.Discard, s.logs)
	}()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("service log:\n%s", s.logs)
		}
	})
	eventually(t, "service ready", func() error {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("service exited: %v", err)
		default:
		}
		return s.ready()
	})
	return s
}

func (s *testService) ready() error {
	resp, err := http.Get(s.base + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %d %s", resp.StatusCode, body)
	}
	return nil
}

// stop shuts the service down and returns what run returned. It may be
// called more than once.
func (s *testService) stop(t testing.TB) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(startTimeout):
		t.Fatalf("service did not stop within %s", startTimeout)
		return nil
	}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count returns how many log lines contain every one of the substrings.
func (b *logBuffer) count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		match := true
		for _, s := range subs {
			match = match && strings.Contains(line, s)
		}
		if match {
			n++
		}
	}
	return n
}

// errNotYet is what a polled condition returns until it holds.
var errNotYet = errors.New("not yet")
