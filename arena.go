package main

import "encoding/binary"

// An arena stores the cache's records (an order's id and body) back to back
// in large chunks of memory. Chunks hold no pointers, so the garbage
// collector never scans them however many orders there are, and a record
// costs its bytes and five more, with no allocation of its own.
//
// Records are never changed in place: a replaced or deleted record is only
// counted dead, and body slices handed out stay valid. The cache moves the
// live records out of mostly dead chunks (see Cache.compact) and the arena
// then drops them.
//
// The zero value is an empty arena. An arena is not safe for concurrent
// use; the cache guards it.
type arena struct {
	chunks [][]byte // nil where a chunk was dropped
	live   []int    // bytes of live records, per chunk
	free   []uint32 // indexes of dropped chunks, for reuse
	cur    int      // the chunk being filled; 0 means none yet
	dead   int      // bytes of dead records in all chunks
	total  int      // capacity of all chunks
}

const (
	// chunkSize is the capacity of an ordinary chunk. A record larger
	// than a quarter of it gets a chunk of its own.
	chunkSize = 1 << 20
	// recordHeader is the length of a record's header: the id's length
	// in one byte (ids are at most 64 bytes) and the body's in four.
	recordHeader = 5
)

// A ref locates a record in an arena. Chunk 0 is never used, so the zero
// ref locates nothing.
type ref struct {
	chunk, off uint32
}

// add appends a record and returns its ref.
func (a *arena) add(uid, body []byte) ref {
	need := recordHeader + len(uid) + len(body)
	c := a.cur
	switch {
	case need > chunkSize/4:
		c = a.newChunk(need)
	case c == 0 || len(a.chunks[c])+need > cap(a.chunks[c]):
		c = a.newChunk(chunkSize)
		a.cur = c
	}

	chunk := a.chunks[c]
	off := len(chunk)
	chunk = append(chunk, byte(len(uid)))
	chunk = binary.LittleEndian.AppendUint32(chunk, uint32(len(body)))
	chunk = append(chunk, uid...)
	a.chunks[c] = append(chunk, body...)
	a.live[c] += need
	return ref{uint32(c), uint32(off)}
}

func (a *arena) newChunk(size int) int {
	if len(a.chunks) == 0 {
		a.chunks, a.live = make([][]byte, 1), make([]int, 1) // chunk 0 stays unused
	}
	a.total += size
	chunk := make([]byte, 0, size)
	if n := len(a.free); n > 0 {
		c := a.free[n-1]
		a.free = a.free[:n-1]
		a.chunks[c], a.live[c] = chunk, 0
		return int(c)
	}
	a.chunks = append(a.chunks, chunk)
	a.live = append(a.live, 0)
	return len(a.chunks) - 1
}

// record returns the id and body of the record at r.
func (a *arena) record(r ref) (uid, body []byte) {
	chunk := a.chunks[r.chunk][r.off:]
	n := int(chunk[0])
	size := int(binary.LittleEndian.Uint32(chunk[1:recordHeader]))
	uid = chunk[recordHeader : recordHeader+n]
	body = chunk[recordHeader+n : recordHeader+n+size : recordHeader+n+size]
	return uid, body
}

// uid returns the id of the record at r.
func (a *arena) uid(r ref) []byte {
	chunk := a.chunks[r.chunk][r.off:]
	return chunk[recordHeader : recordHeader+int(chunk[0])]
}

// size returns the length of the record at r, header included.
func (a *arena) size(r ref) int {
	uid, body := a.record(r)
	return recordHeader + len(uid) + len(body)
}

// release marks the record at r dead, and drops its chunk once nothing in
// it lives.
func (a *arena) release(r ref) {
	n := a.size(r)
	a.live[r.chunk] -= n
	a.dead += n
	if a.live[r.chunk] == 0 && int(r.chunk) != a.cur {
		a.drop(int(r.chunk))
	}
}

// moveOut marks the record at r dead because a copy of it now lives
// elsewhere; unlike release it leaves dropping the chunk to the caller.
func (a *arena) moveOut(r ref) {
	n := a.size(r)
	a.live[r.chunk] -= n
	a.dead += n
}

// drop forgets chunk c, whose records must all be dead.
func (a *arena) drop(c int) {
	a.dead -= len(a.chunks[c])
	a.total -= cap(a.chunks[c])
	a.chunks[c], a.live[c] = nil, 0
	a.free = append(a.free, uint32(c))
}

// emptiest returns the chunk, other than the one being filled, with the
// smallest share of live bytes, or 0 if there is none.
func (a *arena) emptiest() int {
	best, bestShare := 0, 2.0
	for c, chunk := range a.chunks {
		if chunk == nil || c == a.cur {
			continue
		}
		if share := float64(a.live[c]) / float64(len(chunk)); share < bestShare {
			best, bestShare = c, share
		}
	}
	return best
}

// wasteful reports whether dead records take enough room to be worth
// moving the live ones out of the emptiest chunk: more than an eighth of
// all chunks, and more than a chunk.
func (a *arena) wasteful() bool {
	return a.dead > a.total/8 && a.dead > chunkSize
}
