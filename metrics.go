package main

import (
	"encoding/json"
	"expvar"
	"fmt"
	"net/http"
	"strconv"
)

// Metrics counts what the service does. Each service instance has its own,
// served with the process-wide expvar variables at /debug/vars under the
// key "orders". The zero value is not usable; use newMetrics. Metrics is
// safe for concurrent use.
type Metrics struct {
	vars    expvar.Map
	cmdline []string // shown instead of expvar's own, which is unredacted

	Ingested       expvar.Int // orders stored from the stream
	Duplicates     expvar.Int // stream orders already stored, acknowledged only
	DeletedSkipped expvar.Int // stream orders deleted through the API, acknowledged only
	Rejected       expvar.Int // stream messages recorded as rejected
	Redelivered    expvar.Int // stream messages the server delivered again
	Batches        expvar.Int // batches committed
	BatchSizes     *histogram // messages per committed batch
	DBErrors       expvar.Int // failed database calls, of any kind
	Created        expvar.Int // orders created through the API
	Deleted        expvar.Int // orders deleted through the API
	Responses      expvar.Map // HTTP responses by status class: 2xx, 4xx, 5xx
	Reconnects     expvar.Int // streaming sessions restored after a loss

	ChangesApplied expvar.Int // orders re-read after other instances changed them
	Reloads        expvar.Int // whole reloads after losing track of the change log
}

// newMetrics returns the metrics of a service started with the command
// line args, reading the cache's size through cacheSize.
func newMetrics(args []string, cacheSize func() int) *Metrics {
	m := &Metrics{cmdline: redactArgs(args), BatchSizes: newHistogram(1, 10, 100, 1000, 10000)}
	m.vars.Init()
	m.Responses.Init()
	m.vars.Set("ingested", &m.Ingested)
	m.vars.Set("duplicates", &m.Duplicates)
	m.vars.Set("deleted_skipped", &m.DeletedSkipped)
	m.vars.Set("rejected", &m.Rejected)
	m.vars.Set("redelivered", &m.Redelivered)
	m.vars.Set("batches", &m.Batches)
	m.vars.Set("batch_sizes", m.BatchSizes)
	m.vars.Set("db_errors", &m.DBErrors)
	m.vars.Set("created", &m.Created)
	m.vars.Set("deleted", &m.Deleted)
	m.vars.Set("http_responses", &m.Responses)
	m.vars.Set("stream_reconnects", &m.Reconnects)
	m.vars.Set("changes_applied", &m.ChangesApplied)
	m.vars.Set("cache_reloads", &m.Reloads)
	m.vars.Set("cache_orders", expvar.Func(func() any { return cacheSize() }))
	return m
}

// statusClasses names the status classes without allocating per response.
var statusClasses = [...]string{"1xx", "1xx", "2xx", "3xx", "4xx", "5xx"}

// countResponse counts one HTTP response by its status class.
func (m *Metrics) countResponse(status int) {
	if c := status / 100; c >= 1 && c <= 5 {
		m.Responses.Add(statusClasses[c], 1)
	}
}

// ServeHTTP serves the process's expvar variables and these metrics as one
// JSON object, like expvar.Handler, with the command line redacted.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	fmt.Fprintf(w, "{\n")
	expvar.Do(func(kv expvar.KeyValue) {
		if kv.Key == "cmdline" {
			cmdline, _ := json.Marshal(m.cmdline)
			fmt.Fprintf(w, "%q: %s,\n", kv.Key, cmdline)
			return
		}
		fmt.Fprintf(w, "%q: %s,\n", kv.Key, kv.Value)
	})
	fmt.Fprintf(w, "%q: %s\n}\n", "orders", m.vars.String())
}

// histogram counts values into buckets by upper bound; the last bucket
// takes everything larger. It is safe for concurrent use.
type histogram struct {
	bounds []int64
	counts []expvar.Int
}

func newHistogram(bounds ...int64) *histogram {
	return &histogram{bounds: bounds, counts: make([]expvar.Int, len(bounds)+1)}
}

func (h *histogram) Observe(v int64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
}

// String renders the buckets as a JSON object, "le_N" for each bound and
// "more" for the rest, as expvar.Var requires.
func (h *histogram) String() string {
	b := []byte{'{'}
	for i := range h.counts {
		if i > 0 {
			b = append(b, ',')
		}
		key := "more"
		if i < len(h.bounds) {
			key = "le_" + strconv.FormatInt(h.bounds[i], 10)
		}
		b = strconv.AppendQuote(b, key)
		b = append(b, ':')
		b = strconv.AppendInt(b, h.counts[i].Value(), 10)
	}
	return string(append(b, '}'))
}
