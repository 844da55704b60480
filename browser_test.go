package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The browser tests load the service's pages in headless Chromium, driven
// by Playwright from browser/check.mjs. scripts/test.sh installs both.

// needBrowser skips or fails t when Chromium or the driver is missing.
func needBrowser(t testing.TB) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat(filepath.Join("browser", "node_modules", "playwright-core")); err != nil {
		missing = append(missing, "browser/node_modules (npm ci --prefix browser)")
	}
	if _, err := os.Stat(chromiumPath()); err != nil {
		missing = append(missing, "chromium ("+chromiumPath()+")")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("ORDERS_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("browser tests need %s", strings.Join(missing, ", "))
	}
	t.Skipf("browser tests need %s", strings.Join(missing, ", "))
}

func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// browserReport is what browser/check.mjs prints.
type browserReport struct {
	Error   string   `json:"error"`
	Console []string `json:"console"`

	URL           string     `json:"url"`
	Title         string     `json:"title"`
	Summary       []string   `json:"summary"`
	Delivery      []string   `json:"delivery"`
	Payment       []string   `json:"payment"`
	Items         [][]string `json:"items"`
	Injected      int        `json:"injected"`
	Pwned         bool       `json:"pwned"`
	LinkedTitle   string     `json:"linkedTitle"`
	UnknownStatus string     `json:"unknownStatus"`
	UnknownHidden bool       `json:"unknownHidden"`

	Operations []string `json:"operations"`
	Authorize  bool     `json:"authorize"`
}

func runBrowser(t testing.TB, args ...string) browserReport {
	t.Helper()
	cmd := exec.Command("node", append([]string{filepath.Join("browser", "check.mjs")}, args...)...)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromiumPath())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("browser check %v: %v\n%s", args, err, out)
	}
	var r browserReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("browser check printed %q: %v", out, err)
	}
	if r.Error != "" {
		t.Fatalf("browser check %v failed: %s (console: %q)", args, r.Error, r.Console)
	}
	if len(r.Console) > 0 {
		t.Errorf("the page logged problems: %q", r.Console)
	}
	return r
}

func TestBrowserLookupPageShowsOrderSafely(t *testing.T) {
	needBrowser(t)
	env := newTestEnv(t)
	svc := env.start(t)

	// Order content that would run or render if the page treated it as
	// markup.
	evilName := `<img src=x onerror="window.pwned=true">`
	evilItem := `<script>window.pwned=true</script>`
	evilBrand := `<b>bold</b> & "quoted"`
	body := modified(t, func(m map[string]any) {
		m["order_uid"] = "html-order"
		m["delivery"].(map[string]any)["name"] = evilName
		item := m["items"].([]any)[0].(map[string]any)
		item["name"] = evilItem
		item["brand"] = evilBrand
	})
	wantStatus(t, "POST", do(t, "POST", svc.base+"/api/models", "application/json", body), http.StatusCreated)

	r := runBrowser(t, "lookup", svc.base, "html-order")
	if r.Title != "html-order" || r.LinkedTitle != "html-order" {
		t.Errorf("title after typing = %q, after a link = %q; want html-order", r.Title, r.LinkedTitle)
	}
	if !strings.HasSuffix(r.URL, "/?id=html-order") {
		t.Errorf("address after the lookup = %q, want it to end in /?id=html-order", r.URL)
	}
	if len(r.Delivery) == 0 || r.Delivery[0] != evilName {
		t.Errorf("delivery name shown as %q, want the text %q", r.Delivery, evilName)
	}
	if len(r.Items) != 1 || r.Items[0][1] != evilItem || r.Items[0][2] != evilBrand {
		t.Errorf("items table = %q, want one row with the markup as text", r.Items)
	}
	if !slices.Contains(r.Payment, "1817") || !slices.Contains(r.Summary, "WBILMTESTTRACK") {
		t.Errorf("payment %q and summary %q do not show the order's amount and track number", r.Payment, r.Summary)
	}
	if r.Injected != 0 || r.Pwned {
		t.Errorf("order content became markup: %d injected elements, script ran: %v", r.Injected, r.Pwned)
	}
	if !strings.Contains(r.UnknownStatus, "No order has the id") || !r.UnknownHidden {
		t.Errorf("unknown id: status %q, order hidden %v; want a clear message and no order", r.UnknownStatus, r.UnknownHidden)
	}
}

func TestBrowserSwaggerUIRendersEveryOperation(t *testing.T) {
	needBrowser(t)
	env := newTestEnv(t)
	svc := env.start(t)

	r := runBrowser(t, "swagger", svc.base)
	var want []string
	for _, rt := range apiRoutes {
		want = append(want, rt.pattern)
	}
	got := slices.Clone(r.Operations)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Swagger UI shows\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if !r.Authorize {
		t.Error("Swagger UI offers no Authorize button for the bearer token")
	}
}
