package main

import (
	"strconv"
	"time"
	"unicode/utf8"
)

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
