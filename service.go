package main

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"
)

// Service writes orders to the store and then to the cache, in a way that
// keeps the cache equal to what is committed even when writers race on the
// same id. It is safe for concurrent use.
type Service struct {
	store *Store
	cache *Cache
	locks keyLocks

	doubtMu  sync.Mutex
	doubtful map[string]bool // see doubt
}

// NewService returns a Service that writes through store into cache.
func NewService(store *Store, cache *Cache) *Service {
	return &Service{store: store, cache: cache}
}

// Load fills the cache with every stored order and returns the
// change-log cursor to follow from (see follower).
func (s *Service) Load(ctx context.Context) (cursor, error) {
	expect, err := s.store.Estimate(ctx)
	if err != nil {
		return cursor{}, err
	}
	var at cursor
	err = s.cache.Load(expect, func(add func(uid, body []byte)) error {
		at, err = s.store.Load(ctx, add)
		return err
	})
	return at, err
}

// refresh makes the cache hold what the database holds for the given ids:
// the stored body, or nothing. The ids' locks are held from before the
// read until the cache is updated, so a local write cannot slip between
// them and be undone by an older read. The connection is taken before the
// locks, the order writers take them in.
func (s *Service) refresh(ctx context.Context, uids []string) error {
	for len(uids) > 0 {
		n := min(len(uids), followBatch)
		if err := s.refreshBatch(ctx, uids[:n]); err != nil {
			return err
		}
		uids = uids[n:]
	}
	return nil
}

func (s *Service) refreshBatch(ctx context.Context, uids []string) error {
	conn, err := s.store.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	unlock := s.locks.lock(uids...)
	defer unlock()

	found, err := conn.GetMany(ctx, uids)
	if err != nil {
		return err
	}
	for _, uid := range uids {
		s.cache.Set(uid, found[uid])
	}
	return nil
}

// recheckEvery is how often orders whose last write ended in doubt are
// read again.
const recheckEvery = time.Second

// doubt notes orders whose write may or may not have committed: the
// database failed while answering the commit. The cache, updated only
// after a commit it sees succeed, may then differ from the database.
func (s *Service) doubt(uids ...string) {
	s.doubtMu.Lock()
	defer s.doubtMu.Unlock()
	if s.doubtful == nil {
		s.doubtful = make(map[string]bool)
	}
	for _, uid := range uids {
		s.doubtful[uid] = true
	}
}

// recheck reads the doubtful orders again every recheckEvery until ctx is
// done, and makes the cache hold what the database holds for them.
func (s *Service) recheck(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.doubtMu.Lock()
		uids := make([]string, 0, len(s.doubtful))
		for uid := range s.doubtful {
			uids = append(uids, uid)
		}
		s.doubtMu.Unlock()
		if len(uids) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, writeTimeout)
		err := s.refresh(rctx, uids)
		cancel()
		if err != nil {
			continue // still unreachable; next time
		}
		s.doubtMu.Lock()
		for _, uid := range uids {
			delete(s.doubtful, uid)
		}
		s.doubtMu.Unlock()
		log.Info("orders whose commit was in doubt read again", "orders", len(uids))
	}
}

// Create stores a new order, or returns ErrExists.
func (s *Service) Create(ctx context.Context, r Record) error {
	tx, err := s.store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	if err := tx.Insert(ctx, r); err != nil {
		return err
	}
	unlock := s.locks.lock(r.UID)
	defer unlock()
	if err := tx.Commit(); err != nil {
		s.doubt(r.UID)
		return err
	}
	s.cache.Put(r)
	return nil
}

// Delete removes an order and returns its body, or returns ErrNotFound.
func (s *Service) Delete(ctx context.Context, uid string) ([]byte, error) {
	tx, err := s.store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	body, err := tx.Delete(ctx, uid)
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(uid)
	defer unlock()
	if err := tx.Commit(); err != nil {
		s.doubt(uid)
		return nil, err
	}
	s.cache.Delete(uid)
	return body, nil
}

// SaveBatch stores the records whose ids are free and records the
// rejections, all in one transaction, and reports what happened to each
// record. When it returns nil, everything is committed and cached.
func (s *Service) SaveBatch(ctx context.Context, rs []Record, rejects []Rejection) ([]Outcome, error) {
	tx, err := s.store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	var outcomes []Outcome
	if len(rs) > 0 {
		if outcomes, err = tx.InsertBatch(ctx, rs); err != nil {
			return nil, err
		}
	}
	if err := tx.Reject(ctx, rejects); err != nil {
		return nil, err
	}

	var added []Record
	var stored []string // ids of orders found already stored
	for i, o := range outcomes {
		switch o {
		case Inserted:
			added = append(added, rs[i])
		case Duplicate:
			stored = append(stored, rs[i].UID)
		}
	}
	uids := make([]string, len(added))
	for i, r := range added {
		uids[i] = r.UID
	}
	unlock := s.locks.lock(uids...)
	defer unlock()
	if err := tx.Commit(); err != nil {
		s.doubt(uids...)
		return nil, err
	}
	s.cache.PutAll(added)

	// An order already stored should be cached. It is not when a commit
	// of it was in doubt (its message came back unacknowledged); read
	// it again to be sure.
	for _, uid := range stored {
		if _, ok := s.cache.Get(uid); !ok {
			s.doubt(uid)
		}
	}
	return outcomes, nil
}

// Reject records messages that will never become orders.
func (s *Service) Reject(ctx context.Context, rejects []Rejection) error {
	_, err := s.SaveBatch(ctx, nil, rejects)
	return err
}

// keyLocks orders, per order id, each commit with the cache update that
// follows it. A writer takes the locks of the ids it wrote just before
// committing and releases them once the cache is updated, so two commits
// on one id reach the cache in the order they reached the database.
//
// Ids share a fixed set of mutexes, so memory does not grow with the number
// of ids. The zero value is ready to use and safe for concurrent use.
type keyLocks struct {
	stripes [256]sync.Mutex
}

var stripeSeed = maphash.MakeSeed()

// lock locks the stripes of the given ids and returns the function that
// unlocks them. Stripes are always taken in ascending order, so two callers
// cannot deadlock.
func (l *keyLocks) lock(uids ...string) (unlock func()) {
	var held [len(l.stripes)]bool
	for _, uid := range uids {
		held[maphash.String(stripeSeed, uid)%uint64(len(l.stripes))] = true
	}
	for i := range held {
		if held[i] {
			l.stripes[i].Lock()
		}
	}
	return func() {
		for i := range held {
			if held[i] {
				l.stripes[i].Unlock()
			}
		}
	}
}
