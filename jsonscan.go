package main

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON primitives the order decoder is made of (see orderjson.go).

// decoder reads JSON from s. Strings without escapes are slices of s, so
// decoding allocates little beyond the one copy of the input.
type decoder struct {
	s   string
	pos int
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
		return invalid(path(), "%s does not fit in a 64-bit integer", echoNumber(tok))
	}
	return invalid(path(), "want an integer, got number %s", echoNumber(tok))
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
	if fraction(v) > 9 {
		return invalid(path, "has a fraction of a second finer than nanoseconds, which would be cut: %s", quote(v))
	}
	// RFC 3339 allows a lower-case t and z; time.Parse does not. It also
	// takes a comma before the fraction, which RFC 3339 does not.
	text := []byte(v)
	if len(text) > 10 && text[10] == 't' {
		text[10] = 'T'
	}
	if n := len(text); n > 0 && text[n-1] == 'z' {
		text[n-1] = 'Z'
	}
	if strings.IndexByte(v, ',') >= 0 || dst.UnmarshalText(text) != nil {
		return invalid(path, "want an RFC 3339 time such as 2021-11-26T06:22:19Z, got %s", quote(v))
	}
	_, offset := dst.Zone()
	if y := dst.Year(); y < minYear || y > maxYear || offset <= -24*3600 || offset >= 24*3600 {
		return invalid(path, "must be a time from %d to %d with a UTC offset under 24 hours, got %s", minYear, maxYear, quote(v))
	}
	return nil
}

// fraction returns the number of digits after the decimal point of an
// RFC 3339 time's seconds.
func fraction(v string) int {
	dot := strings.IndexByte(v, '.')
	if dot < 0 {
		return 0
	}
	n := 0
	for _, c := range []byte(v[dot+1:]) {
		if c < '0' || c > '9' {
			break
		}
		n++
	}
	return n
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
			kind = "number " + echoNumber(d.s[start:d.pos])
		}
	}
	return invalid(path, "want %s, got %s", want, kind)
}

// echoNumber cuts a number literal for an error message.
func echoNumber(tok string) string {
	if len(tok) > maxEcho {
		return tok[:maxEcho] + "..."
	}
	return tok
}

func (d *decoder) syntax(msg string) error {
	return invalid("", "invalid JSON at offset %d: %s", d.pos, msg)
}
