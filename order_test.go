package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// sampleOrder reads task/model.json.
func sampleOrder(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("task/model.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// modified returns the sample order with one change applied to its
// generic JSON form.
func modified(t testing.TB, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(sampleOrder(t), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// set returns a change that sets the value at a dotted path; a path
// through "items" addresses the first item.
func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) {
		keys := strings.Split(path, ".")
		obj := m
		for _, k := range keys[:len(keys)-1] {
			next := obj[k]
			if list, ok := next.([]any); ok {
				next = list[0]
			}
			obj = next.(map[string]any)
		}
		obj[keys[len(keys)-1]] = v
	}
}

func TestDecodeOrderAcceptsSample(t *testing.T) {
	rec, err := decodeOrder(sampleOrder(t))
	if err != nil {
		t.Fatalf("decodeOrder(sample) = %v, want nil", err)
	}
	if rec.UID != "b563feb7b2b84b6test" {
		t.Errorf("UID = %q, want b563feb7b2b84b6test", rec.UID)
	}

	// The canonical body is the sample without insignificant space.
	var want bytes.Buffer
	json.Compact(&want, sampleOrder(t))
	if !bytes.Equal(rec.Body, want.Bytes()) {
		t.Errorf("canonical body differs from the compacted sample:\ngot  %s\nwant %s", rec.Body, want.Bytes())
	}
}

func TestDecodeOrderIsCanonical(t *testing.T) {
	// Field order, spacing and escapes do not change the stored form.
	reordered := modified(t, func(map[string]any) {})
	a, err := decodeOrder(sampleOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeOrder(reordered)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Body, b.Body) {
		t.Errorf("bodies differ:\n%s\n%s", a.Body, b.Body)
	}
	again, err := decodeOrder(a.Body)
	if err != nil || !bytes.Equal(again.Body, a.Body) {
		t.Errorf("decoding the canonical body again = %s, %v; want the same bytes", again.Body, err)
	}
}

func TestDecodeOrderRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name    string
		change  func(map[string]any)
		wantErr string // "" means valid
	}{
		{"order_uid missing", set("order_uid", ""), "order_uid: is required"},
		{"order_uid at limit", set("order_uid", long(64)), ""},
		{"order_uid over limit", set("order_uid", long(65)), "order_uid: must be at most 64 characters"},
		{"order_uid with slash", set("order_uid", "a/b"), "order_uid: may hold only letters"},
		{"order_uid with space", set("order_uid", "a b"), "order_uid: may hold only letters"},
		{"order_uid dash underscore", set("order_uid", "A-b_9"), ""},
		{"order_uid reserved", set("order_uid", "cache"), "order_uid: \"cache\" is reserved"},
		{"track_number missing", set("track_number", ""), "track_number: is required"},
		{"track_number blank", set("track_number", "   "), "track_number: must not be blank"},
		{"track_number at limit", set("track_number", long(64)), ""},
		{"track_number over limit", set("track_number", long(65)), "track_number: must be at most 64"},
		{"entry missing", set("entry", ""), "entry: is required"},
		{"entry over limit", set("entry", long(33)), "entry: must be at most 32"},
		{"locale empty", set("locale", ""), ""},
		{"locale over limit", set("locale", long(33)), "locale: must be at most 32"},
		{"internal_signature at limit", set("internal_signature", long(256)), ""},
		{"internal_signature over limit", set("internal_signature", long(257)), "internal_signature: must be at most 256"},
		{"customer_id missing", set("customer_id", ""), "customer_id: is required"},
		{"delivery_service empty", set("delivery_service", ""), ""},
		{"shardkey over limit", set("shardkey", long(33)), "shardkey: must be at most 32"},
		{"oof_shard over limit", set("oof_shard", long(33)), "oof_shard: must be at most 32"},
		{"sm_id zero", set("sm_id", 0), ""},
		{"sm_id negative", set("sm_id", -1), "sm_id: must not be negative"},
		{"date_created missing", set("date_created", nil), "date_created: is required"},
		{"date_created not RFC 3339", set("date_created", "26.11.2021"), "date_created: want an RFC 3339 time"},
		{"date_created with offset", set("date_created", "2021-11-26T09:22:19+03:00"), ""},
		{"date_created offset of 24 hours", set("date_created", "2021-11-26T09:22:19+24:00"), "date_created: must be a time from 1970 to 9999"},
		{"date_created year zero", set("date_created", "0000-01-01T00:00:00Z"), "date_created: must be a time from 1970 to 9999"},
		{"date_created first instant", set("date_created", "0001-01-01T00:00:00Z"), "date_created: must be a time from 1970 to 9999"},
		{"date_created 1970", set("date_created", "1970-01-01T00:00:00Z"), ""},
		{"date_created comma fraction", set("date_created", "2021-11-26T06:22:19,5Z"), "date_created: want an RFC 3339 time"},
		{"date_created dot fraction", set("date_created", "2021-11-26T06:22:19.5Z"), ""},
		{"date_created nanoseconds", set("date_created", "2021-11-26T06:22:19.123456789Z"), ""},
		{"date_created finer than nanoseconds", set("date_created", "2021-11-26T06:22:19.1234567891Z"), "date_created: has a fraction of a second finer than nanoseconds"},
		{"date_created lower case", set("date_created", "2021-11-26t06:22:19z"), ""},
		{"name of zero-width spaces", set("delivery.name", "\u200b\u200b"), "delivery.name: must not be blank"},
		{"date_created as number", set("date_created", 5), "date_created: want an RFC 3339 time string, got number 5"},
		{"NUL in a string", set("entry", "WB\x00IL"), "entry: must not contain NUL characters"},
		{"multibyte at limit", set("delivery.name", strings.Repeat("é", 256)), ""},
		{"multibyte over limit", set("delivery.name", strings.Repeat("é", 257)), "delivery.name: must be at most 256 characters"},

		{"delivery missing", set("delivery", nil), "delivery.name: is required"},
		{"delivery name missing", set("delivery.name", ""), "delivery.name: is required"},
		{"delivery city missing", set("delivery.city", ""), "delivery.city: is required"},
		{"delivery address missing", set("delivery.address", ""), "delivery.address: is required"},
		{"delivery zip empty", set("delivery.zip", ""), ""},
		{"delivery region empty", set("delivery.region", ""), ""},
		{"phone empty", set("delivery.phone", ""), ""},
		{"phone with punctuation", set("delivery.phone", "+1 (555) 010-9999"), ""},
		{"phone with letters", set("delivery.phone", "+972call"), "delivery.phone: want digits"},
		{"phone too few digits", set("delivery.phone", "+1234"), "delivery.phone: want digits"},
		{"phone five digits", set("delivery.phone", "12345"), ""},
		{"email empty", set("delivery.email", ""), ""},
		{"email without at", set("delivery.email", "test.gmail.com"), "delivery.email: is not a well-formed email address"},
		{"email with display name", set("delivery.email", "Test <test@gmail.com>"), "delivery.email: is not a well-formed"},
		{"email without dotted domain", set("delivery.email", "test@localhost"), "delivery.email: is not a well-formed"},
		{"email with plus and dots", set("delivery.email", "first.last+tag@mail.example.co.uk"), ""},
		{"email with two ats", set("delivery.email", "a@b@example.com"), "delivery.email: is not a well-formed"},
		{"email with space", set("delivery.email", "a b@example.com"), "delivery.email: is not a well-formed"},
		{"email with double dot", set("delivery.email", "a..b@example.com"), "delivery.email: is not a well-formed"},
		{"email with empty label", set("delivery.email", "a@example..com"), "delivery.email: is not a well-formed"},
		{"email with hyphen edge", set("delivery.email", "a@-example.com"), "delivery.email: is not a well-formed"},
		{"email unicode", set("delivery.email", "тест@пример.рф"), ""},

		{"payment missing", set("payment", nil), "payment.transaction: is required"},
		{"transaction missing", set("payment.transaction", ""), "payment.transaction: is required"},
		{"currency lower case", set("payment.currency", "usd"), "payment.currency: want a three-letter ISO 4217 code"},
		{"currency too long", set("payment.currency", "USDT"), "payment.currency: must be at most 3"},
		{"currency too short", set("payment.currency", "US"), "payment.currency: want a three-letter"},
		{"currency missing", set("payment.currency", ""), "payment.currency: is required"},
		{"provider missing", set("payment.provider", ""), "payment.provider: is required"},
		{"request_id empty", set("payment.request_id", ""), ""},
		{"bank empty", set("payment.bank", ""), ""},
		{"amount zero", set("payment.amount", 0), ""},
		{"amount negative", set("payment.amount", -1), "payment.amount: must not be negative"},
		{"amount fractional", set("payment.amount", 18.17), "payment.amount: want an integer, got number 18.17"},
		{"amount as string", set("payment.amount", "1817"), "payment.amount: want an integer, got string"},
		{"amount too large", set("payment.amount", 1e19), "payment.amount: 10000000000000000000 does not fit in a 64-bit integer"},
		{"amount with exponent", set("payment.amount", json.Number("1e3")), "payment.amount: want an integer, got number 1e3"},
		{"payment_dt negative", set("payment.payment_dt", -1), "payment.payment_dt: must not be negative"},
		{"delivery_cost negative", set("payment.delivery_cost", -1), "payment.delivery_cost: must not be negative"},
		{"goods_total negative", set("payment.goods_total", -1), "payment.goods_total: must not be negative"},
		{"custom_fee negative", set("payment.custom_fee", -1), "payment.custom_fee: must not be negative"},

		{"items missing", set("items", nil), "items: must hold at least one item"},
		{"items empty", set("items", []any{}), "items: must hold at least one item"},
		{"items not an array", set("items", "none"), "items: want an array, got string"},
		{"item chrt_id zero", set("items.chrt_id", 0), "items[0].chrt_id: must be at least 1"},
		{"item chrt_id one", set("items.chrt_id", 1), ""},
		{"item nm_id zero", set("items.nm_id", 0), "items[0].nm_id: must be at least 1"},
		{"item track_number missing", set("items.track_number", ""), "items[0].track_number: is required"},
		{"item rid missing", set("items.rid", ""), "items[0].rid: is required"},
		{"item name missing", set("items.name", ""), "items[0].name: is required"},
		{"item brand empty", set("items.brand", ""), ""},
		{"item size empty", set("items.size", ""), ""},
		{"item price negative", set("items.price", -1), "items[0].price: must not be negative"},
		{"item total_price negative", set("items.total_price", -5), "items[0].total_price: must not be negative"},
		{"item status negative", set("items.status", -1), "items[0].status: must not be negative"},
		{"item sale at 100", set("items.sale", 100), ""},
		{"item sale over 100", set("items.sale", 101), "items[0].sale: must be at most 100"},
		{"item sale negative", set("items.sale", -1), "items[0].sale: must not be negative"},
		{"unknown field", set("colour", "red"), "colour: unknown field"},
		{"unknown nested field", set("payment.tip", 5), "payment.tip: unknown field"},
		{"unknown item field", set("items.colour", "red"), "items[0].colour: unknown field"},
		{"field name in another case", set("ORDER_UID", "x"), "ORDER_UID: unknown field"},
		{"item not an object", set("items", []any{5}), "items[0]: want an object, got number 5"},
		{"delivery not an object", set("delivery", "here"), "delivery: want an object, got string"},
		{"item price as string", set("items.price", "453"), "items[0].price: want an integer, got string"},
		{"order_uid as number", set("order_uid", 5), "order_uid: want a string, got number 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeOrder(modified(t, tt.change))
			checkDecodeErr(t, err, tt.wantErr)
		})
	}
}

func TestDecodeOrderItemLimits(t *testing.T) {
	items := func(n int) func(map[string]any) {
		return func(m map[string]any) {
			first := m["items"].([]any)[0]
			list := make([]any, n)
			for i := range list {
				list[i] = first
			}
			m["items"] = list
		}
	}
	_, err := decodeOrder(modified(t, items(maxItems)))
	checkDecodeErr(t, err, "")
	_, err = decodeOrder(modified(t, items(maxItems+1)))
	checkDecodeErr(t, err, "items: must hold at most 1000 items")

	// The path of a failing item names its index.
	_, err = decodeOrder(modified(t, func(m map[string]any) {
		items(3)(m)
		bad := map[string]any{}
		for k, v := range m["items"].([]any)[0].(map[string]any) {
			bad[k] = v
		}
		bad["price"] = -3
		m["items"].([]any)[2] = bad
	}))
	checkDecodeErr(t, err, "items[2].price: must not be negative, got -3")
}

func TestDecodeOrderMalformed(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantErr string
	}{
		{"empty", "", "empty document"},
		{"not JSON", "hello", "not JSON: an order is a JSON object"},
		{"number", "42", "want a JSON object, got number"},
		{"broken JSON", `{"order_uid" "x"}`, "invalid JSON at offset 13: want ':' after an object key"},
		{"duplicate key", `{"entry": "a", "entry": "b"}`, "entry: appears more than once"},
		{"duplicate nested key", `{"payment": {"amount": 1, "amount": 2}}`, "payment.amount: appears more than once"},
		{"invalid UTF-8", "{\"entry\": \"\xff\"}", "entry: is not valid UTF-8"},
		{"control character", "{\"entry\": \"a\nb\"}", "control character in a string"},
		{"bad escape", `{"entry": "\q"}`, "invalid escape"},
		{"lone surrogate", `{"entry": "a\ud800b"}`, "entry: holds half of a UTF-16 surrogate pair (\\ud800)"},
		{"reversed surrogates", `{"entry": "\udc00\ud800"}`, "entry: holds half of a UTF-16 surrogate pair"},
		{"trailing comma", `{"entry": "a",}`, "want a quoted object key"},
		{"leading comma", `{,"entry": "a"}`, "want a quoted object key"},
		{"leading zero", `{"sm_id": 01}`, "want ',' or '}'"},
		{"truncated", `{"order_uid": "x"`, "unexpected end of input"},
		{"array", `[1,2]`, "want a JSON object, got array"},
		{"string", `"order"`, "want a JSON object, got string"},
		{"null", `null`, "want a JSON object, got null"},
		{"NUL in an unknown key", `{"bad\u0000key": 1}`, `"bad\x00key": unknown field`},
		{"quote in an unknown key", `{"delivery": {"a\"b": 1}}`, `delivery."a\"b": unknown field`},
		{"long unknown key", `{"` + strings.Repeat("k", 5000) + `": 1}`, `"` + strings.Repeat("k", maxEcho) + `"...: unknown field`},
		{"long number", `{"sm_id": 1` + strings.Repeat("0", 5000) + `}`, "sm_id: 1" + strings.Repeat("0", maxEcho-1) + "... does not fit in a 64-bit integer"},
		{"long fraction", `{"sm_id": 1.` + strings.Repeat("5", 5000) + `}`, "sm_id: want an integer, got number 1." + strings.Repeat("5", maxEcho-2) + "..."},
		{"trailing object", string(sampleOrder(t)) + `{}`, "unexpected data after the order object"},
		{"trailing garbage", string(sampleOrder(t)) + `x`, "unexpected data after the order object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeOrder([]byte(tt.data))
			checkDecodeErr(t, err, tt.wantErr)
		})
	}

	// Trailing space is fine.
	_, err := decodeOrder(append(sampleOrder(t), " \n\t"...))
	checkDecodeErr(t, err, "")
}

func checkDecodeErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("decodeOrder = %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("decodeOrder succeeded, want an error containing %q", want)
	}
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Errorf("error %v is a %T, want *InvalidError", err, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
}
