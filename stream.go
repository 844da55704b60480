package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

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
	connectWait  = 5 * time.Second
	pingInterval = 1 // seconds, stan.go's unit
	pingMaxOut   = 3
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	writeTimeout = 10 * time.Second
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
