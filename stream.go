package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/nats-io/stan.go"
)

// StreamConfig says where orders come from and how they are taken.
type StreamConfig struct {
	URL       string
	ClusterID string
	ClientID  string
	Channel   string
	Durable   string
	// QueueGroup, when set, makes the subscription a durable queue
	// group: the instances that share it share the messages, each
	// message going to one of them.
	QueueGroup string

	// BatchSize and BatchWait bound a batch: it is written when it holds
	// BatchSize orders or its first order has waited BatchWait.
	BatchSize int
	BatchWait time.Duration
	// AckWait is how long the server waits for an acknowledgement before
	// it redelivers. It must exceed the time a batch takes to commit, or
	// every slow batch comes back once more (harmlessly, but wastefully).
	AckWait time.Duration
	// MaxInflight bounds the messages the server hands over before they
	// are acknowledged; it must be larger than BatchSize so the next batch
	// fills while one is written.
	MaxInflight int
}

// Bounds on the memory ingestion uses, whatever the size of messages.
const (
	maxPendingBytes = 64 << 20 // taken from the stream and not yet written
	maxBatchBytes   = 8 << 20  // written in one transaction
)

// Timing of the stream's retries and checks.
const (
	connectWait     = 5 * time.Second
	pingInterval    = 1 // seconds, stan.go's unit
	pingMaxOut      = 3
	minBackoff      = 100 * time.Millisecond
	maxBackoff      = 5 * time.Second
	writeTimeout    = 10 * time.Second
	shutdownTimeout = 10 * time.Second
)

// An Ingester takes orders from a NATS Streaming channel and saves them.
// A message is acknowledged only after its order is committed, found
// already committed, or recorded as rejected, so a crash at any point
// loses nothing: the server redelivers what was not acknowledged.
type Ingester struct {
	cfg       StreamConfig
	svc       *Service
	log       *slog.Logger
	metrics   *Metrics
	connected atomic.Bool
	failing   atomic.Bool // the batch in hand could not be saved yet
	pending   budget      // bytes of messages taken and not yet written
}

// NewIngester returns an Ingester that saves orders through svc.
func NewIngester(cfg StreamConfig, svc *Service, log *slog.Logger, m *Metrics) *Ingester {
	return &Ingester{cfg: cfg, svc: svc, log: log, metrics: m}
}

// Connected reports whether the ingester holds a streaming session.
func (in *Ingester) Connected() bool {
	return in.connected.Load()
}

// Failing reports whether saving the batch in hand has failed and is being
// retried, so that ingestion is not advancing.
func (in *Ingester) Failing() bool {
	return in.failing.Load()
}

// item is one delivered message, decoded.
type item struct {
	msg *stan.Msg
	rec Record
	err error // why msg is not an order
}

// Run connects, subscribes and saves orders until ctx is done, then
// saves and acknowledges what it has already taken and closes the session.
// A lost session is restored with the same durable name, so delivery goes
// on from the last acknowledged message.
func (in *Ingester) Run(ctx context.Context) error {
	items := make(chan item, in.cfg.MaxInflight)
	stop := make(chan struct{})
	done := make(chan struct{})
	in.pending.init(maxPendingBytes, stop)
	go func() {
		defer close(done)
		in.writeBatches(items, stop)
	}()

	err := in.session(ctx, items, stop, done)
	<-done
	return err
}

// session keeps one streaming session open at a time until ctx is done.
func (in *Ingester) session(ctx context.Context, items chan<- item, stop chan struct{}, done <-chan struct{}) error {
	backoff := minBackoff
	lostBefore := false
	for {
		lost := make(chan error, 1)
		sc, sub, err := in.subscribe(items, stop, lost)
		if err != nil {
			args := []any{"err", err, "retry_in", backoff}
			if strings.Contains(err.Error(), "clientID already registered") {
				args = append(args, "hint", "another process may use NATS_CLIENT_ID="+in.cfg.ClientID+"; after a crash the server frees it within seconds")
			}
			in.log.Warn("stream connect failed", args...)
			if !sleep(ctx, backoff) {
				close(stop)
				return nil
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if lostBefore {
			in.metrics.Reconnects.Add(1)
		}
		backoff = minBackoff
		in.connected.Store(true)
		in.log.Info("stream connected", "url", redactURL(in.cfg.URL), "channel", in.cfg.Channel, "durable", in.cfg.Durable, "queue_group", in.cfg.QueueGroup)

		select {
		case err := <-lost:
			lostBefore = true
			in.connected.Store(false)
			in.log.Warn("stream connection lost", "err", err)
			sc.Close()
		case <-ctx.Done():
			// Stop taking messages, let the writer finish and
			// acknowledge what it holds, and only then close: acks
			// sent after the subscription closes are ignored.
			close(stop)
			<-done
			in.connected.Store(false)
			// Close, not Unsubscribe: the durable keeps its position.
			if err := sub.Close(); err != nil {
				in.log.Warn("closing subscription", "err", err)
			}
			if err := sc.Close(); err != nil {
				in.log.Warn("closing stream connection", "err", err)
			}
			in.log.Info("stream closed")
			return nil
		}
	}
}

func (in *Ingester) subscribe(items chan<- item, stop <-chan struct{}, lost chan<- error) (stan.Conn, stan.Subscription, error) {
	sc, err := stan.Connect(in.cfg.ClusterID, in.cfg.ClientID,
		stan.NatsURL(in.cfg.URL),
		stan.ConnectWait(connectWait),
		stan.Pings(pingInterval, pingMaxOut),
		stan.SetConnectionLostHandler(func(_ stan.Conn, err error) {
			lost <- err
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", redactURL(in.cfg.URL), err)
	}

	handle := func(m *stan.Msg) {
		// Decoding here, on the delivery goroutine, overlaps it with
		// the writer's database round trips.
		if m.Redelivered {
			in.metrics.Redelivered.Add(1)
		}
		// Wait while too many bytes are in the pipeline. Meanwhile the
		// server holds back the rest (MaxInflight), and what the client
		// library holds beyond its own limit comes back after AckWait.
		if !in.pending.acquire(int64(len(m.Data))) {
			return
		}
		it := item{msg: m}
		it.rec, it.err = decodeOrder(m.Data)
		select {
		case items <- it:
		case <-stop:
			// Not acknowledged: the server delivers it again.
			in.pending.release(int64(len(m.Data)))
		}
	}
	opts := []stan.SubscriptionOption{
		stan.DurableName(in.cfg.Durable),
		stan.SetManualAckMode(),
		stan.AckWait(in.cfg.AckWait),
		stan.MaxInflight(in.cfg.MaxInflight),
		// Applies only when the durable is new: a first start takes
		// every order published before it.
		stan.DeliverAllAvailable(),
	}
	var sub stan.Subscription
	if in.cfg.QueueGroup != "" {
		sub, err = sc.QueueSubscribe(in.cfg.Channel, in.cfg.QueueGroup, handle, opts...)
	} else {
		sub, err = sc.Subscribe(in.cfg.Channel, handle, opts...)
	}
	if err != nil {
		sc.Close()
		return nil, nil, fmt.Errorf("subscribing to %s: %w", in.cfg.Channel, err)
	}
	return sc, sub, nil
}

// reportEvery is how often the ingester logs what it stored, when it
// stored anything.
const reportEvery = 10 * time.Second

// writeBatches gathers items into batches and saves them until stop is
// closed, then saves what it has gathered.
func (in *Ingester) writeBatches(items <-chan item, stop <-chan struct{}) {
	batch := make([]item, 0, in.cfg.BatchSize)
	timer := time.NewTimer(0)
	<-timer.C
	report := time.NewTicker(reportEvery)
	defer report.Stop()
	var reported int64
	batchBytes := 0
	for {
		select {
		case <-report.C:
			if n := in.metrics.Ingested.Value(); n != reported {
				in.log.Info("orders ingested", "last", n-reported, "per", reportEvery, "total", n)
				reported = n
			}
			continue
		case it := <-items:
			if len(batch) == 0 {
				timer.Reset(in.cfg.BatchWait)
			}
			batch = append(batch, it)
			batchBytes += len(it.msg.Data)
			if len(batch) < in.cfg.BatchSize && batchBytes < maxBatchBytes {
				continue
			}
			timer.Stop()
		case <-timer.C:
		case <-stop:
			in.flush(batch, stop)
			return
		}
		in.flush(batch, stop)
		batch, batchBytes = batch[:0], 0
	}
}

// flush saves one batch, retrying while the database is unavailable, and
// acknowledges its messages once saved. If stop closes while it waits to
// retry, it gives up; the unacknowledged messages come back later.
func (in *Ingester) flush(batch []item, stop <-chan struct{}) {
	if len(batch) == 0 {
		return
	}
	defer func() {
		var n int64
		for _, it := range batch {
			n += int64(len(it.msg.Data))
		}
		in.pending.release(n)
	}()
	p := in.split(batch)

	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		err := in.save(p)
		if err == nil {
			if attempt > 1 {
				in.failing.Store(false)
				in.log.Info("batch saved after retrying", "orders", len(p.recs), "attempts", attempt)
			}
			break
		}
		in.failing.Store(true)
		in.metrics.DBErrors.Add(1)
		in.log.Warn("saving batch failed", "orders", len(p.recs), "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-stop:
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}

	in.metrics.Batches.Add(1)
	in.metrics.BatchSizes.Observe(int64(len(batch)))
	for _, it := range batch {
		if err := it.msg.Ack(); err != nil {
			in.log.Debug("ack failed; the message will be redelivered", "seq", it.msg.Sequence, "err", err)
		}
	}
}

// A pending batch is what a flush saves: the valid orders with the
// messages that carried them, and the messages to reject.
type pending struct {
	recs    []Record
	msgs    []*stan.Msg // msgs[i] carried recs[i]
	rejects []Rejection
}

// split separates the valid orders of a batch from the messages to reject.
func (in *Ingester) split(batch []item) pending {
	var p pending
	for _, it := range batch {
		if it.err != nil {
			p.rejects = append(p.rejects, in.rejection(it.msg, it.err.Error()))
			continue
		}
		p.recs = append(p.recs, it.rec)
		p.msgs = append(p.msgs, it.msg)
	}
	return p
}

func (in *Ingester) rejection(m *stan.Msg, reason string) Rejection {
	in.log.Warn("message rejected", "seq", m.Sequence, "reason", reason)
	return Rejection{Channel: in.cfg.Channel, Sequence: m.Sequence, Payload: m.Data, Reason: reason}
}

// save writes a batch. When the database refuses the batch as a whole
// because of what one order holds, it writes the orders one by one and
// rejects those it refuses, so one bad order cannot block the channel.
func (in *Ingester) save(p pending) error {
	outcomes, err := in.saveOnce(p.recs, p.rejects)
	if isRefused(err) {
		outcomes, err = in.saveEach(p)
	}
	if err != nil {
		return err
	}

	var conflicts []Rejection
	var inserted, duplicates, deleted int64
	for i, o := range outcomes {
		switch o {
		case Inserted:
			inserted++
		case Duplicate:
			duplicates++
		case Deleted:
			deleted++
		case Conflict:
			reason := "order_uid " + p.recs[i].UID + " is already stored with different content"
			conflicts = append(conflicts, in.rejection(p.msgs[i], reason))
		}
	}
	if len(conflicts) > 0 {
		if _, err := in.saveOnce(nil, conflicts); err != nil {
			return err
		}
	}
	in.metrics.Ingested.Add(inserted)
	in.metrics.Duplicates.Add(duplicates)
	in.metrics.DeletedSkipped.Add(deleted)
	in.metrics.Rejected.Add(int64(len(p.rejects) + len(conflicts) + refusedCount(outcomes)))
	return nil
}

// refusedCount counts the records saveEach recorded as refused.
func refusedCount(outcomes []Outcome) int {
	n := 0
	for _, o := range outcomes {
		if o == Refused {
			n++
		}
	}
	return n
}

func (in *Ingester) saveOnce(recs []Record, rejects []Rejection) ([]Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return in.svc.SaveBatch(ctx, recs, rejects)
}

// saveEach saves the orders of p one transaction each.
func (in *Ingester) saveEach(p pending) ([]Outcome, error) {
	if _, err := in.saveOnce(nil, p.rejects); err != nil {
		return nil, err
	}
	outcomes := make([]Outcome, len(p.recs))
	for i, r := range p.recs {
		out, err := in.saveOnce([]Record{r}, nil)
		if isRefused(err) {
			rej := in.rejection(p.msgs[i], "database refused the order: "+refusal(err))
			if _, err = in.saveOnce(nil, []Rejection{rej}); err != nil {
				return nil, err
			}
			outcomes[i] = Refused
			continue
		}
		if err != nil {
			return nil, err
		}
		outcomes[i] = out[0]
	}
	return outcomes, nil
}

// Refused marks a record the database refused and that was recorded as
// rejected instead; its message can be acknowledged.
const Refused Outcome = -1

// isRefused reports whether the database rejected the data itself, so
// that retrying the same write can never succeed.
func isRefused(err error) bool {
	e := pq.As(err)
	if e == nil {
		return false
	}
	switch e.Code.Class() {
	case "22", // data exception, such as text PostgreSQL cannot hold
		"23", // integrity constraint violation
		"54": // program limit exceeded, such as a value too large
		return true
	}
	return false
}

func refusal(err error) string {
	if e := pq.As(err); e != nil {
		return e.Message
	}
	return err.Error()
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
