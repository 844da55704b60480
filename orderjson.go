package main

import (
	"fmt"
)

// This file and its companions (jsonscan.go, orderencode.go) read and
// write the JSON of an order by hand. encoding/json
// would do, but every order passes through here, and a decoder that knows
// the one shape it reads is several times faster, allocates little, and
// can name the exact path of a problem (items[3].price). It is stricter
// than encoding/json: keys match exactly (not ignoring case), a key may
// not repeat, and strings must be valid UTF-8. The output is byte for byte
// what json.Marshal writes for the same Order; the fuzz test holds it to
// that.

// parseOrder decodes one order document.
func parseOrder(data []byte) (Order, error) {
	var o Order
	d := decoder{s: string(data)}
	d.space()
	if d.pos == len(d.s) {
		return o, invalid("", "empty document, want a JSON object")
	}
	if d.s[d.pos] != '{' {
		if kind := d.kind(); kind != "" {
			return o, invalid("", "want a JSON object, got %s", kind)
		}
		return o, invalid("", "not JSON: an order is a JSON object, starting with '{'")
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
			err = unknownField("", key)
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
			err = unknownField(p, key)
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
			err = unknownField(p, key)
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
			err = unknownField("", key)
		}
		if err != nil {
			return err
		}
	}
}
