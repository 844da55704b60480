package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeOrder checks decodeOrder on any input: it never panics, it
// rejects with an InvalidError, or it accepts and returns a canonical body
// that decodes to itself. The seed corpus is in testdata/fuzz.
//
//	go test -run '^$' -fuzz FuzzDecodeOrder -fuzztime 1m
func FuzzDecodeOrder(f *testing.F) {
	f.Add(sampleOrder(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := decodeOrder(data)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || err.Error() == "" {
				t.Fatalf("rejected with %T %q, want a non-empty *InvalidError", err, err)
			}
			return
		}
		if !json.Valid(rec.Body) || bytes.IndexByte(rec.Body, 0) >= 0 {
			t.Fatalf("accepted, but the body is not clean JSON: %q", rec.Body)
		}
		if checkID("order_uid", rec.UID) != nil {
			t.Fatalf("accepted an invalid order_uid %q", rec.UID)
		}
		again, err := decodeOrder(rec.Body)
		if err != nil {
			t.Fatalf("the canonical body %s is rejected: %v", rec.Body, err)
		}
		if !bytes.Equal(again.Body, rec.Body) || again.UID != rec.UID {
			t.Fatalf("canonical form is not stable:\n%s\n%s", rec.Body, again.Body)
		}
	})
}
