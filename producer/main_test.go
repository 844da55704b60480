package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// produce runs the producer with args and returns its standard output.
func produce(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"producer"}, args...),
		func(string) string { return "" }, strings.NewReader(stdin), &out, &errOut)
	return out.String(), err
}

type order struct {
	OrderUID string `json:"order_uid"`
	Payment  struct {
		Transaction string `json:"transaction"`
	} `json:"payment"`
	Items []struct {
		RID    string `json:"rid"`
		ChrtID int64  `json:"chrt_id"`
	} `json:"items"`
}

func decodeLines(t *testing.T, out string) []order {
	t.Helper()
	var orders []order
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o order
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("line %q is not an order: %v", line, err)
		}
		orders = append(orders, o)
	}
	return orders
}

func TestCopiesGetFreshIDs(t *testing.T) {
	out, err := produce(t, "", "-file", "../task/model.json", "-n", "100", "-dry-run")
	if err != nil {
		t.Fatal(err)
	}
	orders := decodeLines(t, out)
	if len(orders) != 100 {
		t.Fatalf("got %d messages, want 100", len(orders))
	}
	seen := map[string]bool{}
	for _, o := range orders {
		if seen[o.OrderUID] || o.OrderUID == "b563feb7b2b84b6test" {
			t.Fatalf("id %q repeats or is the sample's", o.OrderUID)
		}
		seen[o.OrderUID] = true
		if o.Payment.Transaction != o.OrderUID {
			t.Errorf("transaction %q does not follow order_uid %q", o.Payment.Transaction, o.OrderUID)
		}
	}
}

func TestNumberedIDsAndVariedItems(t *testing.T) {
	out, err := produce(t, "", "-file", "../task/model.json", "-n", "4", "-max-items", "3", "-id-prefix", "bench-", "-dry-run")
	if err != nil {
		t.Fatal(err)
	}
	orders := decodeLines(t, out)
	wantItems := []int{1, 2, 3, 1}
	for i, o := range orders {
		if want := "bench-0000000" + string(rune('1'+i)); o.OrderUID != want {
			t.Errorf("order %d id = %q, want %q", i, o.OrderUID, want)
		}
		if len(o.Items) != wantItems[i] {
			t.Errorf("order %d has %d items, want %d", i, len(o.Items), wantItems[i])
		}
		rids := map[string]bool{}
		for _, it := range o.Items {
			rids[it.RID] = true
		}
		if len(rids) != len(o.Items) {
			t.Errorf("order %d repeats an item rid: %+v", i, o.Items)
		}
	}
}

func TestUnchangedWithoutN(t *testing.T) {
	sample, err := os.ReadFile("../task/model.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := produce(t, "", "-file", "../task/model.json", "-dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(bytes.TrimSpace(sample))+"\n" {
		t.Errorf("without -n the file changed:\n%s", out)
	}
	out, err = produce(t, "not json at all", "-file", "-", "-dry-run")
	if err != nil || out != "not json at all\n" {
		t.Errorf("stdin published as %q, %v; want it unchanged", out, err)
	}
}

func TestFolderPublishesEachFile(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.json", "a.json", "skip.txt"} {
		os.WriteFile(filepath.Join(dir, name), []byte(`{"order_uid":"`+name+`"}`), 0o644)
	}
	out, err := produce(t, "", "-file", dir, "-dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"order_uid\":\"a.json\"}\n{\"order_uid\":\"b.json\"}\n"; out != want {
		t.Errorf("folder published %q, want a.json then b.json", out)
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		args    []string
		stdin   string
		wantErr string
	}{
		{[]string{"-n", "-1"}, "", "-n must not be negative"},
		{[]string{"-inflight", "0"}, "", "-inflight must be at least 1"},
		{[]string{"-max-items", "2"}, "", "give -n too"},
		{[]string{"-file", "/nonexistent.json"}, "", "no such file"},
		{[]string{"-file", "-", "-n", "2"}, "[1,2]", "not a JSON object"},
		{[]string{"extra"}, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		_, err := produce(t, tt.stdin, append(tt.args, "-dry-run")...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("producer %v = %v, want an error containing %q", tt.args, err, tt.wantErr)
		}
	}
}

func TestCopiesKeepLargeIntegersExact(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "big.json")
	doc := `{"order_uid":"x","payment":{"payment_dt":9007199254740993},"items":[{"rid":"r","chrt_id":9007199254740993}]}`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := produce(t, "", "-file", file, "-n", "2", "-max-items", "2", "-dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"payment_dt":9007199254740993`, `"chrt_id":9007199254740993`, `"chrt_id":9007199254740994`} {
		if !strings.Contains(out, want) {
			t.Errorf("copies lack %s:\n%s", want, out)
		}
	}
}
