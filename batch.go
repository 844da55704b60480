package main

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"
	"github.com/nats-io/stan.go"
)

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
	reason = storableReason(reason)
	in.log.Warn("message rejected", "seq", m.Sequence, "reason", reason)
	return Rejection{Channel: in.cfg.Channel, Sequence: m.Sequence, Payload: m.Data, Reason: reason}
}

// maxReason bounds the bytes of a rejection's reason.
const maxReason = 1024

// storableReason makes a reason text PostgreSQL accepts: valid UTF-8,
// without NUL, and short. A reason it refused would keep the message it
// explains from ever being acknowledged.
func storableReason(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", `\x00`)
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
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
		case DeletedDiffers:
			reason := "order_uid " + p.recs[i].UID + " was deleted through the API, and this message holds a different order; POST it to store it"
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
