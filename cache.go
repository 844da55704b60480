package main

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"
)

// Cache holds the canonical JSON of every stored order, keyed by order_uid,
// and lists them in byte order of order_uid, the same order the database
// uses. Bodies handed out are shared and must not be modified; they stay
// valid after the order changes or leaves the cache.
//
// Its memory holds no pointer per order: records live in an arena, the
// index maps a hash of the id to a record, and the sorted list holds
// records' refs. With a million orders cached, a garbage collection
// therefore costs what it costs with none.
//
// The zero value is an empty cache ready to use. A Cache is safe for
// concurrent use.
type Cache struct {
	mu    sync.RWMutex
	index map[uint64]ref // by hash of order_uid
	// clashes holds the ids whose hash another cached id already has.
	// With 64-bit hashes it stays empty in practice, but it keeps the
	// cache correct if not.
	clashes map[string]ref
	order   sortedRefs
	arena   arena

	clashAll bool // tests set it to give every id the same hash
}

var cacheSeed = maphash.MakeSeed()

func (c *Cache) hash(uid string) uint64 {
	if c.clashAll {
		return 1
	}
	return maphash.String(cacheSeed, uid)
}

func (c *Cache) hashBytes(uid []byte) uint64 {
	if c.clashAll {
		return 1
	}
	return maphash.Bytes(cacheSeed, uid)
}

// Get returns the body of the order with the given id.
func (c *Cache) Get(uid string) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	r, ok := c.find(uid)
	if !ok {
		return nil, false
	}
	_, body := c.arena.record(r)
	return body, true
}

// find returns the ref of the record with the given id.
func (c *Cache) find(uid string) (ref, bool) {
	if r, ok := c.index[c.hash(uid)]; ok && string(c.arena.uid(r)) == uid {
		return r, true
	}
	if len(c.clashes) == 0 {
		return ref{}, false
	}
	r, ok := c.clashes[uid]
	return r, ok
}

// Put stores or replaces an order.
func (c *Cache) Put(r Record) {
	c.mu.Lock()
	c.put(r)
	c.compact()
	c.mu.Unlock()
}

// PutAll stores or replaces several orders under one lock.
func (c *Cache) PutAll(rs []Record) {
	c.mu.Lock()
	for _, r := range rs {
		c.put(r)
	}
	c.compact()
	c.mu.Unlock()
}

func (c *Cache) put(rec Record) {
	if c.index == nil {
		c.index = make(map[uint64]ref)
	}
	old, found := c.find(rec.UID)
	var buf [maxIDLen]byte // keeps the id's bytes off the heap
	r := c.arena.add(append(buf[:0], rec.UID...), rec.Body)
	if found {
		c.arena.release(old)
		c.relocate(rec.UID, r)
		return
	}
	c.link(c.arena.uid(r), r)
	c.order.insert(&c.arena, rec.UID, r)
}

// link enters a new id in the index.
func (c *Cache) link(uid []byte, r ref) {
	h := c.hashBytes(uid)
	if _, taken := c.index[h]; !taken {
		c.index[h] = r
		return
	}
	if c.clashes == nil {
		c.clashes = make(map[string]ref)
	}
	c.clashes[string(uid)] = r
}

// relocate points an id already in the cache at another record.
func (c *Cache) relocate(uid string, r ref) {
	h := c.hash(uid)
	if old, ok := c.index[h]; ok && string(c.arena.uid(old)) == uid {
		c.index[h] = r
	} else {
		c.clashes[uid] = r
	}
	c.order.replace(&c.arena, uid, r)
}

// Set makes the cache hold body for uid, or nothing if body is nil. An
// unchanged body is left alone.
func (c *Cache) Set(uid string, body []byte) {
	if body == nil {
		c.Delete(uid)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.find(uid); ok {
		if _, cur := c.arena.record(r); bytes.Equal(cur, body) {
			return
		}
	}
	c.put(Record{UID: uid, Body: body})
	c.compact()
}

// Delete removes an order and reports whether it was there.
func (c *Cache) Delete(uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()

	r, ok := c.find(uid)
	if !ok {
		return false
	}
	h := c.hash(uid)
	if cur, ok := c.index[h]; ok && cur == r {
		delete(c.index, h)
	} else {
		delete(c.clashes, uid)
	}
	c.order.remove(&c.arena, uid)
	c.arena.release(r)
	c.compact()
	return true
}

// compact moves the live records out of the emptiest chunks while dead
// ones waste too much room, so memory follows the live orders under any
// pattern of replacing and deleting.
func (c *Cache) compact() {
	for c.arena.wasteful() {
		victim := c.arena.emptiest()
		if victim == 0 {
			return
		}
		chunk := c.arena.chunks[victim]
		for off := 0; off < len(chunk); {
			r := ref{uint32(victim), uint32(off)}
			uid, body := c.arena.record(r)
			off += recordHeader + len(uid) + len(body)
			if cur, ok := c.find(string(uid)); ok && cur == r {
				moved := c.arena.add(uid, body)
				c.arena.moveOut(r)
				c.relocate(string(uid), moved)
			}
		}
		c.arena.drop(victim)
	}
}

// Bytes returns the memory the cached records take.
func (c *Cache) Bytes() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.arena.total
}

// Len returns the number of cached orders.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.index) + len(c.clashes)
}

// Scan appends to dst the bodies of up to n orders whose ids sort after
// the given one, in order, and returns them with the id of the last. An
// empty after starts at the beginning. Callers page through the cache by
// passing the returned id back, holding the lock only for one page.
func (c *Cache) Scan(dst [][]byte, after string, n int) ([][]byte, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	last := after
	c.order.ascend(&c.arena, after, func(r ref) bool {
		if n <= 0 {
			return false
		}
		uid, body := c.arena.record(r)
		dst = append(dst, body)
		last = string(uid)
		n--
		return true
	})
	return dst, last
}

// Load replaces the cache's contents with the orders that fill yields,
// each passed to add; expect is a guess of their number, to size the
// index. The id and body passed to add may be reused once it returns; the
// cache copies them. Loading many orders this way is much faster than
// putting them one by one. Until it returns the cache serves its old
// contents, which it keeps if fill fails; writes made to it meanwhile are
// lost with them.
func (c *Cache) Load(expect int, fill func(add func(uid, body []byte)) error) error {
	// Build a new cache beside this one, which serves meanwhile and stays
	// as it was if the load fails, and swap them at the end.
	fresh := Cache{clashAll: c.clashAll}
	refs := make([]ref, 0, max(expect, 0))
	err := fill(func(uid, body []byte) {
		refs = append(refs, fresh.arena.add(uid, body))
	})
	if err != nil {
		return err
	}

	// Index and order the records at once, on two cores.
	var wg sync.WaitGroup
	wg.Go(func() {
		fresh.index = make(map[uint64]ref, len(refs))
		for _, r := range refs {
			fresh.link(fresh.arena.uid(r), r)
		}
	})
	fresh.order.build(fresh.sorted(refs))
	wg.Wait()

	c.mu.Lock()
	c.index, c.clashes, c.order, c.arena = fresh.index, fresh.clashes, fresh.order, fresh.arena
	c.mu.Unlock()
	return nil
}

// sorted returns refs in byte order of their ids, leaving refs as it is. It compares the first
// sixteen bytes of the ids held beside the refs, which decide almost every
// comparison without a trip to the arena's scattered memory.
func (c *Cache) sorted(refs []ref) []ref {
	type key struct {
		hi, lo uint64
		r      ref
	}
	keys := make([]key, len(refs))
	for i, r := range refs {
		var prefix [16]byte
		copy(prefix[:], c.arena.uid(r))
		keys[i] = key{binary.BigEndian.Uint64(prefix[:8]), binary.BigEndian.Uint64(prefix[8:]), r}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(a.hi, b.hi); c != 0 {
			return c
		}
		if c := cmp.Compare(a.lo, b.lo); c != 0 {
			return c
		}
		return bytes.Compare(c.arena.uid(a.r), c.arena.uid(b.r))
	})
	out := make([]ref, len(keys))
	for i, k := range keys {
		out[i] = k.r
	}
	return out
}

// maxBlock bounds a block of sortedRefs, so an insert moves at most this
// many refs however large the cache grows.
const maxBlock = 1024

// sortedRefs holds the cache's records in byte order of their ids, as a
// list of sorted blocks of refs; comparing reads the ids from the arena.
// The zero value is an empty list. It is not safe for concurrent use.
type sortedRefs struct {
	blocks [][]ref
}

// cmpUID compares a stored id with another; the conversions do not copy.
func cmpUID(stored []byte, uid string) int {
	switch {
	case string(stored) < uid:
		return -1
	case string(stored) > uid:
		return 1
	}
	return 0
}

// locate returns the block that holds uid or would receive it, and the
// position in it, and whether uid is there.
func (s *sortedRefs) locate(a *arena, uid string) (bi, i int, found bool) {
	bi, _ = slices.BinarySearchFunc(s.blocks, uid, func(b []ref, uid string) int {
		return cmpUID(a.uid(b[len(b)-1]), uid)
	})
	bi = min(bi, len(s.blocks)-1)
	i, found = slices.BinarySearchFunc(s.blocks[bi], uid, func(r ref, uid string) int {
		return cmpUID(a.uid(r), uid)
	})
	return bi, i, found
}

func (s *sortedRefs) insert(a *arena, uid string, r ref) {
	if len(s.blocks) == 0 {
		b := make([]ref, 1, maxBlock)
		b[0] = r
		s.blocks = append(s.blocks, b)
		return
	}
	bi, i, _ := s.locate(a, uid)
	b := slices.Insert(s.blocks[bi], i, r)
	s.blocks[bi] = b
	if len(b) < maxBlock {
		return
	}

	// Split a full block in two so that inserts stay cheap.
	half := len(b) / 2
	right := make([]ref, len(b)-half, maxBlock)
	copy(right, b[half:])
	s.blocks[bi] = b[:half]
	s.blocks = slices.Insert(s.blocks, bi+1, right)
}

// replace points the entry for uid at another record.
func (s *sortedRefs) replace(a *arena, uid string, r ref) {
	if bi, i, found := s.locate(a, uid); found {
		s.blocks[bi][i] = r
	}
}

func (s *sortedRefs) remove(a *arena, uid string) {
	if len(s.blocks) == 0 {
		return
	}
	bi, i, found := s.locate(a, uid)
	if !found {
		return
	}
	b := slices.Delete(s.blocks[bi], i, i+1)
	if len(b) == 0 {
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		return
	}
	s.blocks[bi] = b
}

// ascend calls fn for each record whose id sorts after the given one, in
// order, until fn returns false.
func (s *sortedRefs) ascend(a *arena, after string, fn func(ref) bool) {
	if len(s.blocks) == 0 {
		return
	}
	bi, i, found := s.locate(a, after)
	if found {
		i++
	}
	for ; bi < len(s.blocks); bi, i = bi+1, 0 {
		for _, r := range s.blocks[bi][i:] {
			if !fn(r) {
				return
			}
		}
	}
}

// build fills an empty list from refs already in order, with blocks half
// full so that the first inserts do not split them at once.
func (s *sortedRefs) build(refs []ref) {
	for len(refs) > 0 {
		n := min(len(refs), maxBlock/2)
		b := make([]ref, n, maxBlock)
		copy(b, refs[:n])
		s.blocks = append(s.blocks, b)
		refs = refs[n:]
	}
}
