package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Benchmarks of the hot paths. CI runs them once each (-benchtime=1x) so
// they keep compiling and working; bench/run.sh measures the whole service.

func BenchmarkDecodeOrder(b *testing.B) {
	data := sampleOrder(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeOrder(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSteps(b *testing.B) {
	data := sampleOrder(b)
	o, _ := parseOrder(data)
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			parseOrder(data)
		}
	})
	b.Run("validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o.Validate()
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 2048)
		for b.Loop() {
			appendOrder(buf[:0], &o)
		}
	})
}

func BenchmarkCacheGet(b *testing.B) {
	var c Cache
	for i := range 100000 {
		c.Put(rec(fmt.Sprintf("order-%06d", i)))
	}
	uid := "order-050000"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(uid); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkCacheHandler(b *testing.B) {
	sample, err := decodeOrder(sampleOrder(b))
	if err != nil {
		b.Fatal(err)
	}
	h := newCacheServer(b, sample).routes()
	req := httptest.NewRequest("GET", "/api/models/cache/"+sample.UID, nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		w.Body.Reset()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkInsertBatch(b *testing.B) {
	env := newTestEnv(b)
	store := env.store(b)
	ctx := context.Background()
	svc := NewService(store, &Cache{})
	const batch = 1000
	sample := canonicalSample(b)
	b.SetBytes(int64(batch * len(sample.Body)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		recs := make([]Record, batch)
		for i := range recs {
			n++
			uid := fmt.Sprintf("bench-%09d", n)
			recs[i] = Record{UID: uid, Body: bytes.Replace(sample.Body, []byte(sample.UID), []byte(uid), 2)}
		}
		if _, err := svc.SaveBatch(ctx, recs, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "orders/s")
}
