// Command producer publishes orders to the NATS Streaming channel the
// service reads. By default it publishes task/model.json once, as it is;
// with -n it publishes that many copies, each with a fresh order_uid.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/stan.go"
)

// uidPlaceholder stands for the order_uid in a document template.
const uidPlaceholder = "\x00order_uid\x00"

const progressEvery = time.Second

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

// options are the producer's settings.
type options struct {
	file      string
	count     int
	maxItems  int
	idPrefix  string
	rate      float64
	inflight  int
	url       string
	clusterID string
	channel   string
	quiet     bool
	dryRun    bool
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var o options
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.file, "file", "task/model.json", "order `file` to publish; - reads standard input, a folder publishes each *.json file in it")
	fs.IntVar(&o.count, "n", 0, "publish this many copies, each with a fresh order_uid; 0 publishes each file once, unchanged")
	fs.IntVar(&o.maxItems, "max-items", 0, "with -n, give copy i 1 + i%max-items items, copies of the first with their own rid and chrt_id; 0 keeps the file's items")
	fs.StringVar(&o.idPrefix, "id-prefix", "", "with -n, number the copies' ids PREFIX00000001, PREFIX00000002, ... instead of random ones")
	fs.Float64Var(&o.rate, "rate", 0, "most messages published per second; 0 for no limit")
	fs.IntVar(&o.inflight, "inflight", 1024, "most publishes awaiting the server's acknowledgement")
	fs.StringVar(&o.url, "nats-url", env("NATS_URL", "nats://localhost:4222"), "NATS server `URL` (env NATS_URL)")
	fs.StringVar(&o.clusterID, "nats-cluster-id", env("NATS_CLUSTER_ID", "test-cluster"), "NATS Streaming cluster id (env NATS_CLUSTER_ID)")
	fs.StringVar(&o.channel, "nats-channel", env("NATS_CHANNEL", "orders"), "channel to publish to (env NATS_CHANNEL)")
	fs.BoolVar(&o.quiet, "q", false, "print only the final summary")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the messages instead of publishing them: each file as it is, or with -n each copy on one line")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case o.count < 0:
		return o, fmt.Errorf("-n must not be negative, got %d", o.count)
	case o.maxItems < 0:
		return o, fmt.Errorf("-max-items must not be negative, got %d", o.maxItems)
	case (o.maxItems > 0 || o.idPrefix != "") && o.count == 0:
		return o, errors.New("-max-items and -id-prefix apply to copies; give -n too")
	case o.rate < 0:
		return o, fmt.Errorf("-rate must not be negative, got %g", o.rate)
	case o.inflight < 1:
		return o, fmt.Errorf("-inflight must be at least 1, got %d", o.inflight)
	}
	return o, nil
}

// run publishes what the options ask for and reports. It fails if any
// publish is not acknowledged.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	o, err := parseOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	docs, err := readDocs(o.file, stdin)
	if err != nil {
		return err
	}
	next, total, err := messages(docs, o)
	if err != nil {
		return err
	}

	if o.dryRun {
		for i := range total {
			data, _ := next(i)
			stdout.Write(append(bytes.TrimSpace(data), '\n'))
		}
		return nil
	}

	clientID := "orders-producer-" + randomID()[:12]
	sc, err := stan.Connect(o.clusterID, clientID, stan.NatsURL(o.url), stan.MaxPubAcksInflight(o.inflight))
	if err != nil {
		return fmt.Errorf("connecting to %s (cluster %s): %w", redact(o.url), o.clusterID, err)
	}
	defer sc.Close()

	p := &publisher{sc: sc, channel: o.channel, quiet: o.quiet || total > 10, out: stdout}
	start := time.Now()
	sent := p.publishAll(ctx, next, total, o.rate, stderr)
	p.wait()
	elapsed := time.Since(start)

	acked, failed := p.acked.Load(), p.failed.Load()
	fmt.Fprintf(stdout, "published %d of %d to %s: %d acknowledged, %d failed, %.0f orders/s\n",
		sent, total, o.channel, acked, failed, float64(acked)/elapsed.Seconds())
	switch {
	case failed > 0:
		return fmt.Errorf("%d publishes failed: %v", failed, p.firstErr())
	case sent < total:
		return fmt.Errorf("stopped after %d of %d", sent, total)
	}
	return nil
}

// A doc is one input document, and its generic form when it is a JSON
// object.
type doc struct {
	name string
	data []byte
	obj  map[string]any
}

func newDoc(name string, data []byte) doc {
	d := doc{name: name, data: data}
	// Numbers stay as written, so copies keep integers past 2^53 exact.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&d.obj) != nil || dec.InputOffset() != int64(len(bytes.TrimRight(data, " \t\r\n"))) {
		d.obj = nil
	}
	return d
}

// readDocs reads the input: a file, standard input, or each *.json file of
// a folder, in name order.
func readDocs(path string, stdin io.Reader) ([]doc, error) {
	if path == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return []doc{newDoc("stdin", data)}, nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	paths := []string{path}
	if info.IsDir() {
		if paths, err = filepath.Glob(filepath.Join(path, "*.json")); err != nil {
			return nil, err
		}
		sort.Strings(paths)
		if len(paths) == 0 {
			return nil, fmt.Errorf("no *.json files in %s", path)
		}
	}
	docs := make([]doc, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		docs = append(docs, newDoc(p, data))
	}
	return docs, nil
}

// A template is a document split around its order_uid: the parts to join
// with a fresh id.
type template [][]byte

// makeTemplate builds the template of a document with the given number of
// items (0 keeps them as they are). The payment's transaction id follows
// the order_uid when the two were equal, as in real orders.
func makeTemplate(obj map[string]any, items int) (template, error) {
	m := make(map[string]any, len(obj))
	for k, v := range obj {
		m[k] = v
	}
	uid, _ := m["order_uid"].(string)
	m["order_uid"] = uidPlaceholder
	if pay, ok := m["payment"].(map[string]any); ok && uid != "" && pay["transaction"] == uid {
		p := make(map[string]any, len(pay))
		for k, v := range pay {
			p[k] = v
		}
		p["transaction"] = uidPlaceholder
		m["payment"] = p
	}
	if items > 0 {
		list, _ := m["items"].([]any)
		first, ok := anyFirst(list)
		if !ok {
			return nil, errors.New("-max-items needs a document with at least one item object")
		}
		copies := make([]any, items)
		for j := range copies {
			it := make(map[string]any, len(first))
			for k, v := range first {
				it[k] = v
			}
			if rid, ok := it["rid"].(string); ok && j > 0 {
				it["rid"] = fmt.Sprintf("%s-%d", rid, j)
			}
			if num, ok := it["chrt_id"].(json.Number); ok {
				if chrt, err := num.Int64(); err == nil {
					it["chrt_id"] = json.Number(strconv.FormatInt(chrt+int64(j), 10))
				}
			}
			copies[j] = it
		}
		m["items"] = copies
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	quoted, _ := json.Marshal(uidPlaceholder)
	return bytes.Split(data, quoted[1:len(quoted)-1]), nil
}

func anyFirst(list []any) (map[string]any, bool) {
	if len(list) == 0 {
		return nil, false
	}
	m, ok := list[0].(map[string]any)
	return m, ok
}

// messages returns a function yielding each message to publish with a
// name to report it by, and their number.
func messages(docs []doc, o options) (func(i int) ([]byte, string), int, error) {
	if o.count == 0 {
		return func(i int) ([]byte, string) { return docs[i].data, docs[i].name }, len(docs), nil
	}
	variants := max(o.maxItems, 1)
	templates := make([][]template, len(docs))
	for i, d := range docs {
		if d.obj == nil {
			return nil, 0, fmt.Errorf("%s: not a JSON object, cannot give copies fresh ids; publish it without -n", d.name)
		}
		for k := range variants {
			items := 0
			if o.maxItems > 0 {
				items = k + 1
			}
			t, err := makeTemplate(d.obj, items)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %w", d.name, err)
			}
			templates[i] = append(templates[i], t)
		}
	}
	return func(i int) ([]byte, string) {
		uid := randomID()
		if o.idPrefix != "" {
			uid = fmt.Sprintf("%s%08d", o.idPrefix, i+1)
		}
		t := templates[i%len(docs)][i%variants]
		return bytes.Join(t, []byte(uid)), uid
	}, o.count, nil
}

// publisher publishes asynchronously and counts the server's answers.
type publisher struct {
	sc      stan.Conn
	channel string
	quiet   bool
	out     io.Writer

	wg     sync.WaitGroup
	acked  atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	err    error // the first failure
}

// publishAll publishes total messages at most rate per second and returns
// how many it handed to the client. stan.go blocks a publish while the
// in-flight limit is reached, which bounds memory.
func (p *publisher) publishAll(ctx context.Context, next func(int) ([]byte, string), total int, rate float64, progress io.Writer) int {
	start := time.Now()
	lastReport := start
	for i := 0; i < total; i++ {
		if ctx.Err() != nil {
			return i
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		data, name := next(i)
		p.wg.Add(1)
		if _, err := p.sc.PublishAsync(p.channel, data, p.acknowledged); err != nil {
			p.wg.Done()
			p.fail(fmt.Errorf("publishing %s: %w", name, err))
			return i
		}
		if !p.quiet {
			fmt.Fprintf(p.out, "published %s\n", name)
		}
		if now := time.Now(); now.Sub(lastReport) >= progressEvery {
			lastReport = now
			fmt.Fprintf(progress, "%d/%d published, %d acknowledged, %d failed\n", i+1, total, p.acked.Load(), p.failed.Load())
		}
	}
	return total
}

func (p *publisher) acknowledged(_ string, err error) {
	defer p.wg.Done()
	if err != nil {
		p.fail(err)
		return
	}
	p.acked.Add(1)
}

func (p *publisher) fail(err error) {
	p.failed.Add(1)
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *publisher) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// wait waits for the server's answer to every publish. stan.go times each
// out after its publish acknowledgement wait, so this ends.
func (p *publisher) wait() {
	p.wg.Wait()
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// redact hides the credentials in a NATS URL.
func redact(s string) string {
	i := strings.Index(s, "://")
	at := strings.LastIndex(s, "@")
	if i < 0 || at < i {
		return s
	}
	return s[:i+3] + "xxxxx" + s[at:]
}
