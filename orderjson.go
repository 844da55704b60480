package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// This file reads and writes the JSON of an order by hand. encoding/json
// would do, but every order passes through here, and a decoder that knows
// the one shape it reads is several times faster, allocates little, and
// can name the exact path of a problem (items[3].price). It is stricter
// than encoding/json: keys match exactly (not ignoring case), a key may
// not repeat, and strings must be valid UTF-8. Its output is
// byte-for-byte what json.Marshal writes for the same Order; the fuzz test
// holds it to that.

// parseOrder decodes one order document.
func parseOrder(data []byte) (Order, error) {
	var o Order
	d := decoder{s: string(data)}
	d.space()
	if d.pos == len(d.s) {
		return o, invalid("", "empty document, want a JSON object")
	}
	if c := d.s[d.pos]; c != '{' {
		if kind := d.kind(); kind != "" && kind != "null" {
			return o, invalid("", "want a JSON object, got %s", kind)
		}
		if c != 'n' {
			return o, invalid("", "not JSON: an order is a JSON object, starting with '{'")
		}
	}
	if err := d.order(&o); err != nil {
		return o, err
	}
	d.space()
	if d.pos != len(d.s) {
		return o, invalid("", "unexpected data after the order object at offset %d", d.pos)
	}
	return o, nil
}

// decoder reads JSON from s. Strings without escapes are slices of s, so
// decoding allocates little beyond the one copy of the input.
type decoder struct {
	s   string
	pos int
}

// Field bits, one per member of an object, to find repeated keys.
const (
	bit0 = 1 << iota
	bit1
	bit2
	bit3
	bit4
	bit5
	bit6
	bit7
	bit8
	bit9
	bit10
	bit11
	bit12
	bit13
)

func (d *decoder) order(o *Order) error {
	null, err := d.open("")
	if null || err != nil {
		return err
	}
	var seen uint32
	for first := true; ; first = false {
		key, ok, err := d.next(first, "")
		if !ok || err != nil {
			return err
		}
		switch key {
		case "order_uid":
			err = d.field(&seen, bit0, "", key, &o.OrderUID)
		case "track_number":
			err = d.field(&seen, bit1, "", key, &o.TrackNumber)
		case "entry":
			err = d.field(&seen, bit2, "", key, &o.Entry)
		case "delivery":
			if err = d.once(&seen, bit3, "", key); err == nil {
				err = d.delivery(&o.Delivery)
			}
		case "payment":
			if err = d.once(&seen, bit4, "", key); err == nil {
				err = d.payment(&o.Payment)
			}
		case "items":
			if err = d.once(&seen, bit5, "", key); err == nil {
				err = d.items(&o.Items)
			}
		case "locale":
			err = d.field(&seen, bit6, "", key, &o.Locale)
		case "internal_signature":
			err = d.field(&seen, bit7, "", key, &o.InternalSignature)
		case "customer_id":
			err = d.field(&seen, bit8, "", key, &o.CustomerID)
		case "delivery_service":
			err = d.field(&seen, bit9, "", key, &o.DeliveryService)
		case "shardkey":
			err = d.field(&seen, bit10, "", key, &o.ShardKey)
		case "sm_id":
			err = d.number(&seen, bit11, "", key, &o.SmID)
		case "date_created":
			if err = d.once(&seen, bit12, "", key); err == nil {
				err = d.time(key, &o.DateCreated)
			}
		case "oof_shard":
			err = d.field(&seen, bit13, "", key, &o.OofShard)
		default:
			err = invalid(key, "unknown field")
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) delivery(x *Delivery) error {
	const p = "delivery."
	null, err := d.open("delivery")
	if null || err != nil {
		return err
	}
	var seen uint32
	for first := true; ; first = false {
		key, ok, err := d.next(first, p)
		if !ok || err != nil {
			return err
		}
		switch key {
		case "name":
			err = d.field(&seen, bit0, p, key, &x.Name)
		case "phone":
			err = d.field(&seen, bit1, p, key, &x.Phone)
		case "zip":
			err = d.field(&seen, bit2, p, key, &x.Zip)
		case "city":
			err = d.field(&seen, bit3, p, key, &x.City)
		case "address":
			err = d.field(&seen, bit4, p, key, &x.Address)
		case "region":
			err = d.field(&seen, bit5, p, key, &x.Region)
		case "email":
			err = d.field(&seen, bit6, p, key, &x.Email)
		default:
			err = invalid(p+key, "unknown field")
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) payment(x *Payment) error {
	const p = "payment."
	null, err := d.open("payment")
	if null || err != nil {
		return err
	}
	var seen uint32
	for first := true; ; first = false {
		key, ok, err := d.next(first, p)
		if !ok || err != nil {
			return err
		}
		switch key {
		case "transaction":
			err = d.field(&seen, bit0, p, key, &x.Transaction)
		case "request_id":
			err = d.field(&seen, bit1, p, key, &x.RequestID)
		case "currency":
			err = d.field(&seen, bit2, p, key, &x.Currency)
		case "provider":
			err = d.field(&seen, bit3, p, key, &x.Provider)
		case "amount":
			err = d.number(&seen, bit4, p, key, &x.Amount)
		case "payment_dt":
			err = d.number(&seen, bit5, p, key, &x.PaymentDT)
		case "bank":
			err = d.field(&seen, bit6, p, key, &x.Bank)
		case "delivery_cost":
			err = d.number(&seen, bit7, p, key, &x.DeliveryCost)
		case "goods_total":
			err = d.number(&seen, bit8, p, key, &x.GoodsTotal)
		case "custom_fee":
			err = d.number(&seen, bit9, p, key, &x.CustomFee)
		default:
			err = invalid(p+key, "unknown field")
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) items(xs *[]Item) error {
	d.space()
	if d.literal("null") {
		return nil
	}
	if d.pos >= len(d.s) || d.s[d.pos] != '[' {
		return d.wrongType("items", "an array")
	}
	d.pos++
	d.space()
	if d.pos < len(d.s) && d.s[d.pos] == ']' {
		d.pos++
		*xs = []Item{}
		return nil
	}
	// Most orders hold a few items; start with room for them.
	*xs = make([]Item, 0, 4)
	for i := 0; ; i++ {
		if i == maxItems {
			// Refuse before decoding more than can be stored.
			return invalid("items", "must hold at most %d items", maxItems)
		}
		*xs = append(*xs, Item{})
		if err := d.item(&(*xs)[i], i); err != nil {
			return err
		}
		d.space()
		if d.pos >= len(d.s) {
			return d.syntax("unexpected end of input in items")
		}
		switch d.s[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return nil
		default:
			return d.syntax("want ',' or ']' after an item")
		}
	}
}

func (d *decoder) item(x *Item, i int) error {
	d.space()
	if d.pos < len(d.s) && d.s[d.pos] != '{' && !d.hasLiteral("null") {
		return d.wrongType(fmt.Sprintf("items[%d]", i), "an object")
	}
	// The path is built only when something is wrong.
	err := d.itemFields(x)
	if ie, ok := err.(*InvalidError); ok && ie.Field != "" {
		ie.Field = fmt.Sprintf("items[%d].%s", i, ie.Field)
	}
	return err
}

func (d *decoder) itemFields(x *Item) error {
	null, err := d.open("")
	if null || err != nil {
		return err
	}
	var seen uint32
	for first := true; ; first = false {
		key, ok, err := d.next(first, "")
		if !ok || err != nil {
			return err
		}
		switch key {
		case "chrt_id":
			err = d.number(&seen, bit0, "", key, &x.ChrtID)
		case "track_number":
			err = d.field(&seen, bit1, "", key, &x.TrackNumber)
		case "price":
			err = d.number(&seen, bit2, "", key, &x.Price)
		case "rid":
			err = d.field(&seen, bit3, "", key, &x.RID)
		case "name":
			err = d.field(&seen, bit4, "", key, &x.Name)
		case "sale":
			err = d.number(&seen, bit5, "", key, &x.Sale)
		case "size":
			err = d.field(&seen, bit6, "", key, &x.Size)
		case "total_price":
			err = d.number(&seen, bit7, "", key, &x.TotalPrice)
		case "nm_id":
			err = d.number(&seen, bit8, "", key, &x.NmID)
		case "brand":
			err = d.field(&seen, bit9, "", key, &x.Brand)
		case "status":
			err = d.number(&seen, bit10, "", key, &x.Status)
		default:
			err = invalid(key, "unknown field")
		}
		if err != nil {
			return err
		}
	}
}

// open reads the start of an object, or null. A null object leaves the
// fields empty, as if absent.
func (d *decoder) open(path string) (null bool, err error) {
	d.space()
	if d.literal("null") {
		return true, nil
	}
	if d.pos >= len(d.s) || d.s[d.pos] != '{' {
		if d.pos >= len(d.s) {
			return false, d.syntax("unexpected end of input")
		}
		return false, d.wrongType(path, "an object")
	}
	d.pos++
	return false, nil
}

// next reads the next key of an object and the colon after it, first
// telling whether no member was read yet. It reports false at the closing
// brace.
func (d *decoder) next(first bool, prefix string) (key string, ok bool, err error) {
	d.space()
	if d.pos >= len(d.s) {
		return "", false, d.syntax("unexpected end of input in an object")
	}
	switch c := d.s[d.pos]; {
	case c == '}':
		d.pos++
		return "", false, nil
	case !first && c == ',':
		d.pos++
		d.space()
	case !first:
		return "", false, d.syntax("want ',' or '}' after an object member")
	}
	if d.pos >= len(d.s) || d.s[d.pos] != '"' {
		return "", false, d.syntax("want a quoted object key")
	}
	key, ok = d.plain()
	if !ok {
		if key, err = d.quoted(prefix); err != nil {
			return "", false, err
		}
	}
	d.space()
	if d.pos >= len(d.s) || d.s[d.pos] != ':' {
		return "", false, d.syntax("want ':' after an object key")
	}
	d.pos++
	return key, true, nil
}

// A member's path is its object's prefix ("payment.") and its key. The
// two are joined only to report an error, so reading allocates nothing.

// once marks a member seen and fails if it was seen before.
func (d *decoder) once(seen *uint32, bit uint32, prefix, key string) error {
	if *seen&bit != 0 {
		return invalid(prefix+key, "appears more than once")
	}
	*seen |= bit
	return nil
}

// field reads a string member.
func (d *decoder) field(seen *uint32, bit uint32, prefix, key string, dst *string) error {
	if err := d.once(seen, bit, prefix, key); err != nil {
		return err
	}
	d.space()
	if d.literal("null") {
		return nil
	}
	if d.pos >= len(d.s) || d.s[d.pos] != '"' {
		return d.wrongType(prefix+key, "a string")
	}
	v, ok := d.plain()
	if !ok {
		var err error
		if v, err = d.quoted(prefix + key); err != nil {
			return err
		}
	}
	*dst = v
	return nil
}

// number reads an integer member.
func (d *decoder) number(seen *uint32, bit uint32, prefix, key string, dst *int64) error {
	if err := d.once(seen, bit, prefix, key); err != nil {
		return err
	}
	d.space()
	if d.literal("null") {
		return nil
	}
	path := func() string { return prefix + key }
	if d.pos >= len(d.s) || (d.s[d.pos] != '-' && (d.s[d.pos] < '0' || d.s[d.pos] > '9')) {
		return d.wrongType(path(), "an integer")
	}
	start := d.pos
	if !d.scanNumber() {
		return d.syntax("malformed number")
	}
	tok := d.s[start:d.pos]
	n, err := strconv.ParseInt(tok, 10, 64)
	if err == nil {
		*dst = n
		return nil
	}
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return invalid(path(), "%s does not fit in a 64-bit integer", tok)
	}
	return invalid(path(), "want an integer, got number %s", tok)
}

// time reads an RFC 3339 time member.
func (d *decoder) time(path string, dst *time.Time) error {
	d.space()
	if d.literal("null") {
		return nil
	}
	if d.pos >= len(d.s) || d.s[d.pos] != '"' {
		return d.wrongType(path, "an RFC 3339 time string")
	}
	v, err := d.quoted(path)
	if err != nil {
		return err
	}
	// time.Parse also takes a comma before the fraction; RFC 3339 does not.
	if strings.IndexByte(v, ',') >= 0 || dst.UnmarshalText([]byte(v)) != nil {
		return invalid(path, "want an RFC 3339 time such as 2021-11-26T06:22:19Z, got %q", v)
	}
	_, offset := dst.Zone()
	if y := dst.Year(); y < minYear || y > maxYear || offset <= -24*3600 || offset >= 24*3600 {
		return invalid(path, "must be a time from %d to %d with a UTC offset under 24 hours, got %q", minYear, maxYear, v)
	}
	return nil
}

// The years an order's date_created may fall in.
const (
	minYear = 1970
	maxYear = 9999
)

// scanNumber moves past a JSON number and reports whether it was one.
func (d *decoder) scanNumber() bool {
	s, i := d.s, d.pos
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	d.pos = i
	return true
}

// plain reads a string starting at its opening quote if it holds only
// printable ASCII without escapes, the common case, and reports whether
// it did.
func (d *decoder) plain() (string, bool) {
	for i := d.pos + 1; i < len(d.s); i++ {
		switch c := d.s[i]; {
		case c == '"':
			v := d.s[d.pos+1 : i]
			d.pos = i + 1
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", false
		}
	}
	return "", false
}

// quoted reads a string starting at its opening quote.
func (d *decoder) quoted(path string) (string, error) {
	start := d.pos + 1
	ascii := true
	for i := start; i < len(d.s); i++ {
		switch c := d.s[i]; {
		case c == '"':
			d.pos = i + 1
			v := d.s[start:i]
			if !ascii && !utf8.ValidString(v) {
				return "", invalid(path, "is not valid UTF-8")
			}
			return v, nil
		case c == '\\':
			return d.unescape(path, start, i)
		case c < 0x20:
			d.pos = i
			return "", d.syntax("control character in a string")
		case c >= 0x80:
			ascii = false
		}
	}
	d.pos = len(d.s)
	return "", d.syntax("unexpected end of input in a string")
}

// unescape reads the rest of a string that holds escapes; s[start:i] is
// already known to be plain.
func (d *decoder) unescape(path string, start, i int) (string, error) {
	b := make([]byte, 0, i-start+16)
	b = append(b, d.s[start:i]...)
	for i < len(d.s) {
		c := d.s[i]
		switch {
		case c == '"':
			d.pos = i + 1
			if !utf8.Valid(b) {
				return "", invalid(path, "is not valid UTF-8")
			}
			return string(b), nil
		case c < 0x20:
			d.pos = i
			return "", d.syntax("control character in a string")
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(d.s) {
			break
		}
		esc := d.s[i+1]
		i += 2
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(d.s, i)
			if !ok {
				d.pos = i
				return "", d.syntax("malformed \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				// Only a pair makes a character.
				r2, ok := rune(-1), false
				if i+6 <= len(d.s) && d.s[i] == '\\' && d.s[i+1] == 'u' {
					r2, ok = hex4(d.s, i+2)
				}
				dec := utf16.DecodeRune(r, r2)
				if !ok || dec == utf8.RuneError {
					// encoding/json would put U+FFFD in its place and
					// lose what was sent.
					return "", invalid(path, "holds half of a UTF-16 surrogate pair (\\u%04x), which is not a character", r)
				}
				r = dec
				i += 6
			}
			b = utf8.AppendRune(b, r)
		default:
			d.pos = i - 1
			return "", d.syntax("invalid escape")
		}
	}
	d.pos = len(d.s)
	return "", d.syntax("unexpected end of input in a string")
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// literal consumes lit if it comes next.
func (d *decoder) literal(lit string) bool {
	if len(d.s)-d.pos >= len(lit) && d.s[d.pos:d.pos+len(lit)] == lit {
		d.pos += len(lit)
		return true
	}
	return false
}

func (d *decoder) space() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// kind names the JSON value that starts at the current position, or ""
// if none does.
func (d *decoder) kind() string {
	if d.pos >= len(d.s) {
		return ""
	}
	switch c := d.s[d.pos]; {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' && d.hasLiteral("true"), c == 'f' && d.hasLiteral("false"):
		return "boolean"
	case c == 'n' && d.hasLiteral("null"):
		return "null"
	case c == '-' || '0' <= c && c <= '9':
		return "number"
	}
	return ""
}

func (d *decoder) hasLiteral(lit string) bool {
	return len(d.s)-d.pos >= len(lit) && d.s[d.pos:d.pos+len(lit)] == lit
}

// wrongType reports a value of the wrong kind, or a syntax error if there
// is no value at all.
func (d *decoder) wrongType(path, want string) error {
	kind := d.kind()
	if kind == "" {
		return d.syntax("want a value")
	}
	if kind == "number" {
		start := d.pos
		if d.scanNumber() {
			kind = "number " + d.s[start:d.pos]
		}
	}
	return invalid(path, "want %s, got %s", want, kind)
}

func (d *decoder) syntax(msg string) error {
	return invalid("", "invalid JSON at offset %d: %s", d.pos, msg)
}

// appendOrder appends the canonical JSON of o: what json.Marshal writes.
func appendOrder(b []byte, o *Order) []byte {
	b = appendKey(b, '{', "order_uid", o.OrderUID)
	b = appendKey(b, ',', "track_number", o.TrackNumber)
	b = appendKey(b, ',', "entry", o.Entry)

	b = append(b, `,"delivery":`...)
	dl := &o.Delivery
	b = appendKey(b, '{', "name", dl.Name)
	b = appendKey(b, ',', "phone", dl.Phone)
	b = appendKey(b, ',', "zip", dl.Zip)
	b = appendKey(b, ',', "city", dl.City)
	b = appendKey(b, ',', "address", dl.Address)
	b = appendKey(b, ',', "region", dl.Region)
	b = appendKey(b, ',', "email", dl.Email)

	p := &o.Payment
	b = append(b, `},"payment":`...)
	b = appendKey(b, '{', "transaction", p.Transaction)
	b = appendKey(b, ',', "request_id", p.RequestID)
	b = appendKey(b, ',', "currency", p.Currency)
	b = appendKey(b, ',', "provider", p.Provider)
	b = appendInt(b, "amount", p.Amount)
	b = appendInt(b, "payment_dt", p.PaymentDT)
	b = appendKey(b, ',', "bank", p.Bank)
	b = appendInt(b, "delivery_cost", p.DeliveryCost)
	b = appendInt(b, "goods_total", p.GoodsTotal)
	b = appendInt(b, "custom_fee", p.CustomFee)

	b = append(b, `},"items":`...)
	if o.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range o.Items {
			it := &o.Items[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"chrt_id":`...)
			b = strconv.AppendInt(b, it.ChrtID, 10)
			b = appendKey(b, ',', "track_number", it.TrackNumber)
			b = appendInt(b, "price", it.Price)
			b = appendKey(b, ',', "rid", it.RID)
			b = appendKey(b, ',', "name", it.Name)
			b = appendInt(b, "sale", it.Sale)
			b = appendKey(b, ',', "size", it.Size)
			b = appendInt(b, "total_price", it.TotalPrice)
			b = appendInt(b, "nm_id", it.NmID)
			b = appendKey(b, ',', "brand", it.Brand)
			b = appendInt(b, "status", it.Status)
			b = append(b, '}')
		}
		b = append(b, ']')
	}

	b = appendKey(b, ',', "locale", o.Locale)
	b = appendKey(b, ',', "internal_signature", o.InternalSignature)
	b = appendKey(b, ',', "customer_id", o.CustomerID)
	b = appendKey(b, ',', "delivery_service", o.DeliveryService)
	b = appendKey(b, ',', "shardkey", o.ShardKey)
	b = appendInt(b, "sm_id", o.SmID)
	b = append(b, `,"date_created":"`...)
	b = o.DateCreated.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendKey(b, ',', "oof_shard", o.OofShard)
	return append(b, '}')
}

// appendKey appends sep, "key":"value".
func appendKey(b []byte, sep byte, key, value string) []byte {
	b = append(b, sep, '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendInt appends ,"key":n.
func appendInt(b []byte, key string, n int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, n, 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it: quotes, backslashes and control characters, the HTML
// characters <, > and &, and U+2028 and U+2029. s is valid UTF-8.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + size
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
