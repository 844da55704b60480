package main

import (
	"slices"
	"strings"
	"sync"
)

// Cache holds the canonical JSON of every stored order, keyed by order_uid,
// and lists them in byte order of order_uid, the same order the database
// uses. Bodies handed out are shared and must not be modified.
//
// The zero value is an empty cache ready to use. A Cache is safe for
// concurrent use.
type Cache struct {
	mu     sync.RWMutex
	orders map[string][]byte
	keys   sortedKeys
}

// Get returns the body of the order with the given id.
func (c *Cache) Get(uid string) ([]byte, bool) {
	c.mu.RLock()
	body, ok := c.orders[uid]
	c.mu.RUnlock()
	return body, ok
}

// Put stores or replaces an order.
func (c *Cache) Put(r Record) {
	c.mu.Lock()
	c.put(r)
	c.mu.Unlock()
}

// PutAll stores or replaces several orders under one lock.
func (c *Cache) PutAll(rs []Record) {
	c.mu.Lock()
	for _, r := range rs {
		c.put(r)
	}
	c.mu.Unlock()
}

func (c *Cache) put(r Record) {
	if c.orders == nil {
		c.orders = make(map[string][]byte)
	}
	if _, ok := c.orders[r.UID]; !ok {
		c.keys.insert(r.UID)
	}
	c.orders[r.UID] = r.Body
}

// Delete removes an order and reports whether it was there.
func (c *Cache) Delete(uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()

	if _, ok := c.orders[uid]; !ok {
		return false
	}
	delete(c.orders, uid)
	c.keys.remove(uid)
	return true
}

// Len returns the number of cached orders.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.orders)
}

// Scan appends to dst the bodies of up to n orders whose ids sort after
// the given one, in order, and returns them with the id of the last. An
// empty after starts at the beginning. Callers page through the cache by
// passing the returned id back, holding the lock only for one page.
func (c *Cache) Scan(dst [][]byte, after string, n int) ([][]byte, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	last := after
	c.keys.ascend(after, func(uid string) bool {
		if n <= 0 {
			return false
		}
		dst = append(dst, c.orders[uid])
		last = uid
		n--
		return true
	})
	return dst, last
}

// maxBlock bounds a block of sortedKeys, so an insert moves at most this
// many strings however large the cache grows.
const maxBlock = 1024

// sortedKeys is a set of strings kept in byte order as a list of sorted
// blocks. The zero value is an empty set. It is not safe for concurrent
// use.
type sortedKeys struct {
	blocks [][]string
}

// find returns the index of the block that holds k or would receive it.
func (s *sortedKeys) find(k string) int {
	i, _ := slices.BinarySearchFunc(s.blocks, k, func(b []string, k string) int {
		return strings.Compare(b[len(b)-1], k)
	})
	return min(i, len(s.blocks)-1)
}

func (s *sortedKeys) insert(k string) {
	if len(s.blocks) == 0 {
		b := make([]string, 1, maxBlock)
		b[0] = k
		s.blocks = append(s.blocks, b)
		return
	}
	bi := s.find(k)
	b := s.blocks[bi]
	i, found := slices.BinarySearch(b, k)
	if found {
		return
	}
	b = slices.Insert(b, i, k)
	s.blocks[bi] = b
	if len(b) < maxBlock {
		return
	}

	// Split a full block in two so that inserts stay cheap.
	half := len(b) / 2
	right := make([]string, len(b)-half, maxBlock)
	copy(right, b[half:])
	clear(b[half:])
	s.blocks[bi] = b[:half]
	s.blocks = slices.Insert(s.blocks, bi+1, right)
}

func (s *sortedKeys) remove(k string) {
	if len(s.blocks) == 0 {
		return
	}
	bi := s.find(k)
	b := s.blocks[bi]
	i, found := slices.BinarySearch(b, k)
	if !found {
		return
	}
	b = slices.Delete(b, i, i+1)
	if len(b) == 0 {
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		return
	}
	s.blocks[bi] = b
}

// ascend calls fn for each key greater than after, in order, until fn
// returns false.
func (s *sortedKeys) ascend(after string, fn func(string) bool) {
	if len(s.blocks) == 0 {
		return
	}
	bi := s.find(after)
	i, found := slices.BinarySearch(s.blocks[bi], after)
	if found {
		i++
	}
	for ; bi < len(s.blocks); bi, i = bi+1, 0 {
		for _, k := range s.blocks[bi][i:] {
			if !fn(k) {
				return
			}
		}
	}
}
