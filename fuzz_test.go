package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeOrder checks decodeOrder on any input against encoding/json:
// it never panics; what it reports as invalid JSON is invalid JSON; what
// it accepts, encoding/json decodes to the same order, and the canonical
// body is exactly json.Marshal's and decodes to itself. The seed corpus is
// in testdata/fuzz.
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
			if msg := err.Error(); (strings.HasPrefix(msg, "invalid JSON") || strings.HasPrefix(msg, "not JSON")) && json.Valid(data) {
				t.Fatalf("valid JSON reported as %q", msg)
			}
			return
		}

		var std Order
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			var timeErr *time.ParseError
			if errors.As(err, &timeErr) {
				// RFC 3339 allows a lower-case t and z; time.Parse
				// does not, and decodeOrder does.
				return
			}
			t.Fatalf("accepted, but encoding/json rejects it: %v", err)
		}
		want, err := json.Marshal(&std)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Body, want) {
			t.Fatalf("canonical body differs from json.Marshal:\nours %s\nstd  %s", rec.Body, want)
		}
		ours, _ := parseOrder(data)
		if !ours.DateCreated.Equal(std.DateCreated) || ours.DateCreated.String() != std.DateCreated.String() {
			t.Fatalf("date_created decoded as %v, encoding/json says %v", ours.DateCreated, std.DateCreated)
		}
		ours.DateCreated, std.DateCreated = time.Time{}, time.Time{}
		if !reflect.DeepEqual(ours, std) {
			t.Fatalf("decoded differently from encoding/json:\nours %+v\nstd  %+v", ours, std)
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

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	var all []byte
	for c := range 0x80 {
		all = append(all, byte(c))
	}
	for _, s := range []string{
		"", "plain", string(all), "<b>&amp;</b>", "line\u2028sep\u2029", "é 😀 中文", `"quoted" \back\`,
	} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}
