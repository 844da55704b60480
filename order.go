package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on the shape of an order. They are generous for real orders and
// keep a single document from growing without bound.
const (
	maxIDLen    = 64   // order_uid and other identifiers
	maxCodeLen  = 32   // short codes: entry, locale, shard keys, size
	maxTextLen  = 256  // names, brands, addresses
	maxItems    = 1000 // items in one order
	maxSalePerc = 100
)

// An Order is one customer order as it travels on the stream and through
// the API. The JSON names match the documents producers send.
type Order struct {
	OrderUID          string    `json:"order_uid"`
	TrackNumber       string    `json:"track_number"`
	Entry             string    `json:"entry"`
	Delivery          Delivery  `json:"delivery"`
	Payment           Payment   `json:"payment"`
	Items             []Item    `json:"items"`
	Locale            string    `json:"locale"`
	InternalSignature string    `json:"internal_signature"`
	CustomerID        string    `json:"customer_id"`
	DeliveryService   string    `json:"delivery_service"`
	ShardKey          string    `json:"shardkey"`
	SmID              int64     `json:"sm_id"`
	DateCreated       time.Time `json:"date_created"`
	OofShard          string    `json:"oof_shard"`
}

// Delivery is where and to whom an order goes.
type Delivery struct {
	Name    string `json:"name"`
	Phone   string `json:"phone"`
	Zip     string `json:"zip"`
	City    string `json:"city"`
	Address string `json:"address"`
	Region  string `json:"region"`
	Email   string `json:"email"`
}

// Payment describes how an order was paid. Amounts are in the currency's
// minor units.
type Payment struct {
	Transaction  string `json:"transaction"`
	RequestID    string `json:"request_id"`
	Currency     string `json:"currency"`
	Provider     string `json:"provider"`
	Amount       int64  `json:"amount"`
	PaymentDT    int64  `json:"payment_dt"`
	Bank         string `json:"bank"`
	DeliveryCost int64  `json:"delivery_cost"`
	GoodsTotal   int64  `json:"goods_total"`
	CustomFee    int64  `json:"custom_fee"`
}

// Item is one line of an order.
type Item struct {
	ChrtID      int64  `json:"chrt_id"`
	TrackNumber string `json:"track_number"`
	Price       int64  `json:"price"`
	RID         string `json:"rid"`
	Name        string `json:"name"`
	Sale        int64  `json:"sale"`
	Size        string `json:"size"`
	TotalPrice  int64  `json:"total_price"`
	NmID        int64  `json:"nm_id"`
	Brand       string `json:"brand"`
	Status      int64  `json:"status"`
}

// A Record is an order ready to be stored: its id and its canonical JSON.
// Body is never modified once built, so it may be shared freely.
type Record struct {
	UID  string
	Body []byte
}

// An InvalidError reports why a document is not a valid order. Field is
// the JSON path of the offending value, empty when the document as a whole
// is at fault.
type InvalidError struct {
	Field   string
	Problem string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// maxEcho is how many characters of a client's value an error repeats.
const maxEcho = 64

// quote quotes a value for an error message, cut to maxEcho characters,
// so that a huge or strange value yields a short, printable message.
func quote(v string) string {
	if utf8.RuneCountInString(v) <= maxEcho {
		return strconv.Quote(v)
	}
	return strconv.Quote(string([]rune(v)[:maxEcho])) + "..."
}

// unknownField reports a key the order does not have. A key that is not
// a plain name is quoted, so that what it holds (a NUL, a quote, a
// megabyte) cannot garble the path.
func unknownField(prefix, key string) error {
	if len(key) > maxEcho || strings.Trim(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
		key = quote(key)
	}
	return invalid(prefix+key, "unknown field")
}

// decodeOrder parses and validates one order document and returns it with
// its canonical encoding. The HTTP API and the stream both accept orders
// only through here, so every stored body has the same shape.
func decodeOrder(data []byte) (Record, error) {
	o, err := parseOrder(data)
	if err != nil {
		return Record{}, err
	}
	if err := o.Validate(); err != nil {
		return Record{}, err
	}
	// Encode into a reused buffer and keep an exact-size copy: the body
	// may live in the cache for as long as the process, and a buffer
	// sized by the input would waste what indentation took.
	buf := encodeBuffers.Get().(*[]byte)
	*buf = appendOrder((*buf)[:0], &o)
	body := bytes.Clone(*buf)
	encodeBuffers.Put(buf)
	return Record{UID: o.OrderUID, Body: body}, nil
}

var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// A textRule constrains one string field.
type textRule struct {
	field    string
	value    string
	required bool
	max      int
}

// A numberRule constrains one integer field to [min, max].
type numberRule struct {
	field    string
	value    int64
	min, max int64
}

const maxInt64 = 1<<63 - 1

// Validate reports the first rule the order breaks, or nil.
func (o *Order) Validate() error {
	if err := checkID("order_uid", o.OrderUID); err != nil {
		return err
	}
	err := checkText("", []textRule{
		{"track_number", o.TrackNumber, true, maxIDLen},
		{"entry", o.Entry, true, maxCodeLen},
		{"locale", o.Locale, false, maxCodeLen},
		{"internal_signature", o.InternalSignature, false, maxTextLen},
		{"customer_id", o.CustomerID, true, maxIDLen},
		{"delivery_service", o.DeliveryService, false, maxIDLen},
		{"shardkey", o.ShardKey, false, maxCodeLen},
		{"oof_shard", o.OofShard, false, maxCodeLen},
	})
	if err != nil {
		return err
	}
	if o.SmID < 0 {
		return invalid("sm_id", "must not be negative, got %d", o.SmID)
	}
	if o.DateCreated.IsZero() {
		return invalid("date_created", "is required")
	}

	if err := o.Delivery.validate(); err != nil {
		return err
	}
	if err := o.Payment.validate(); err != nil {
		return err
	}
	return validateItems(o.Items)
}

func (d *Delivery) validate() error {
	err := checkText("delivery.", []textRule{
		{"name", d.Name, true, maxTextLen},
		{"phone", d.Phone, false, maxCodeLen},
		{"zip", d.Zip, false, maxCodeLen},
		{"city", d.City, true, maxTextLen},
		{"address", d.Address, true, maxTextLen},
		{"region", d.Region, false, maxTextLen},
		{"email", d.Email, false, maxTextLen},
	})
	if err != nil {
		return err
	}
	if d.Phone != "" && !isPhone(d.Phone) {
		return invalid("delivery.phone", "want digits with an optional leading +, spaces, dashes or parentheses, got %s", quote(d.Phone))
	}
	if d.Email != "" && !isEmail(d.Email) {
		return invalid("delivery.email", "is not a well-formed email address: %s", quote(d.Email))
	}
	return nil
}

func (p *Payment) validate() error {
	err := checkText("payment.", []textRule{
		{"transaction", p.Transaction, true, maxIDLen},
		{"request_id", p.RequestID, false, maxIDLen},
		{"currency", p.Currency, true, 3},
		{"provider", p.Provider, true, maxIDLen},
		{"bank", p.Bank, false, maxIDLen},
	})
	if err != nil {
		return err
	}
	if !isCurrency(p.Currency) {
		return invalid("payment.currency", "want a three-letter ISO 4217 code such as USD, got %s", quote(p.Currency))
	}
	return checkNumbers("payment.", []numberRule{
		{"amount", p.Amount, 0, maxInt64},
		{"payment_dt", p.PaymentDT, 0, maxInt64},
		{"delivery_cost", p.DeliveryCost, 0, maxInt64},
		{"goods_total", p.GoodsTotal, 0, maxInt64},
		{"custom_fee", p.CustomFee, 0, maxInt64},
	})
}

func validateItems(items []Item) error {
	if len(items) == 0 {
		return invalid("items", "must hold at least one item")
	}
	if len(items) > maxItems {
		return invalid("items", "must hold at most %d items, got %d", maxItems, len(items))
	}
	for i := range items {
		if err := items[i].validate(i); err != nil {
			return err
		}
	}
	return nil
}

func (it *Item) validate(i int) error {
	// Only build the path prefix when a rule fails; this runs for every
	// item of every order.
	err := checkText("", []textRule{
		{"track_number", it.TrackNumber, true, maxIDLen},
		{"rid", it.RID, true, maxIDLen},
		{"name", it.Name, true, maxTextLen},
		{"size", it.Size, false, maxCodeLen},
		{"brand", it.Brand, false, maxTextLen},
	})
	if err == nil {
		err = checkNumbers("", []numberRule{
			{"chrt_id", it.ChrtID, 1, maxInt64},
			{"price", it.Price, 0, maxInt64},
			{"sale", it.Sale, 0, maxSalePerc},
			{"total_price", it.TotalPrice, 0, maxInt64},
			{"nm_id", it.NmID, 1, maxInt64},
			{"status", it.Status, 0, maxInt64},
		})
	}
	var ie *InvalidError
	if errors.As(err, &ie) {
		ie.Field = fmt.Sprintf("items[%d].%s", i, ie.Field)
	}
	return err
}

// checkID checks an identifier that appears in URLs: letters, digits, '-'
// and '_' only, and not "cache", which names the cache routes.
func checkID(field, v string) error {
	if err := checkText("", []textRule{{field, v, true, maxIDLen}}); err != nil {
		return err
	}
	if v == "cache" {
		return invalid(field, "%s is reserved: /api/models/cache lists the cache", quote(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isAlnum(c) && c != '-' && c != '_' {
			return invalid(field, "may hold only letters, digits, '-' and '_', got %s", quote(v))
		}
	}
	return nil
}

func checkText(prefix string, rules []textRule) error {
	for _, r := range rules {
		switch {
		case r.value == "" && r.required:
			return invalid(prefix+r.field, "is required")
		case len(r.value) > r.max && utf8.RuneCountInString(r.value) > r.max:
			return invalid(prefix+r.field, "must be at most %d characters, got %d", r.max, utf8.RuneCountInString(r.value))
		case strings.IndexByte(r.value, 0) >= 0:
			return invalid(prefix+r.field, "must not contain NUL characters")
		case r.required && isBlank(r.value):
			return invalid(prefix+r.field, "must not be blank")
		}
	}
	return nil
}

func checkNumbers(prefix string, rules []numberRule) error {
	for _, r := range rules {
		switch {
		case r.value < r.min && r.min == 0:
			return invalid(prefix+r.field, "must not be negative, got %d", r.value)
		case r.value < r.min:
			return invalid(prefix+r.field, "must be at least %d, got %d", r.min, r.value)
		case r.value > r.max:
			return invalid(prefix+r.field, "must be at most %d, got %d", r.max, r.value)
		}
	}
	return nil
}

// isBlank reports whether s shows nothing: only white space and invisible
// format characters such as U+200B ZERO WIDTH SPACE.
func isBlank(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) && !unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// isPhone accepts the usual ways of writing a phone number: an optional
// leading '+', then digits with spaces, dashes or parentheses, holding at
// least five digits.
func isPhone(s string) bool {
	s = strings.TrimPrefix(s, "+")
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case c == ' ' || c == '-' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return digits >= 5
}

// isEmail accepts a bare address such as test@gmail.com: a local part of
// letters, digits, dots and the other characters RFC 5322 allows
// unquoted, and a domain of two or more dot-separated labels of letters,
// digits and hyphens. Bytes past ASCII are allowed in both, for
// internationalised addresses.
func isEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at < 1 || at > 64 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x80 && !isAlnum(c) && !strings.ContainsRune(".!#$%&'*+/=?^_`{|}~-", rune(c)) {
			return false
		}
	}
	labels := 0
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; c < 0x80 && !isAlnum(c) && c != '-' {
				return false
			}
		}
		labels++
	}
	return labels >= 2
}
