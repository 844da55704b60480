// Looks an order up by its order_uid in the service's cache and lays it
// out. Order content is only ever set as text (textContent), never parsed
// as HTML, so a field holding markup shows as that markup and cannot run.
"use strict";

const form = document.getElementById("lookup");
const input = document.getElementById("id");
const statusLine = document.getElementById("status");
const view = document.getElementById("order");

function say(text, kind) {
  statusLine.textContent = text;
  statusLine.className = kind || "";
}

// fill replaces the rows of a definition list with [label, value] pairs.
function fill(id, pairs) {
  const dl = document.getElementById(id);
  dl.replaceChildren();
  for (const [label, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value === "" || value === undefined || value === null ? "—" : String(value);
    dl.append(dt, dd);
  }
}

function unixTime(seconds) {
  const d = new Date(seconds * 1000);
  return isNaN(d) ? String(seconds) : `${seconds} (${d.toISOString().replace(".000Z", "Z")})`;
}

function show(order) {
  document.getElementById("order-title").textContent = order.order_uid;
  fill("summary", [
    ["Track number", order.track_number],
    ["Entry", order.entry],
    ["Customer", order.customer_id],
    ["Created", order.date_created],
    ["Delivery service", order.delivery_service],
    ["Locale", order.locale],
    ["Shard key", order.shardkey],
    ["sm_id", order.sm_id],
    ["oof_shard", order.oof_shard],
    ["Internal signature", order.internal_signature],
  ]);
  const d = order.delivery || {};
  fill("delivery", [
    ["Name", d.name],
    ["Phone", d.phone],
    ["Email", d.email],
    ["Address", d.address],
    ["City", d.city],
    ["Region", d.region],
    ["Zip", d.zip],
  ]);
  const p = order.payment || {};
  fill("payment", [
    ["Transaction", p.transaction],
    ["Request id", p.request_id],
    ["Provider", p.provider],
    ["Bank", p.bank],
    ["Currency", p.currency],
    ["Amount", p.amount],
    ["Goods total", p.goods_total],
    ["Delivery cost", p.delivery_cost],
    ["Custom fee", p.custom_fee],
    ["Paid at", unixTime(p.payment_dt)],
  ]);

  const body = document.querySelector("#items tbody");
  body.replaceChildren();
  (order.items || []).forEach((item, i) => {
    const row = document.createElement("tr");
    const cells = [i + 1, item.name, item.brand, item.size, item.price, item.sale + "%",
      item.total_price, item.chrt_id, item.nm_id, item.rid, item.track_number, item.status];
    cells.forEach((value, j) => {
      const td = document.createElement("td");
      td.textContent = value;
      if ([0, 4, 5, 6, 7, 8, 11].includes(j)) td.className = "num";
      row.append(td);
    });
    body.append(row);
  });
  document.getElementById("raw").textContent = JSON.stringify(order, null, 2);
  view.hidden = false;
}

async function lookup(id) {
  view.hidden = true;
  if (!id) {
    say("");
    return;
  }
  say(`Looking up ${id}…`);
  let resp;
  try {
    resp = await fetch(`/api/models/cache/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
  } catch (err) {
    say(`The service did not answer: ${err.message}`, "error");
    return;
  }
  if (resp.status === 404) {
    say(`No order has the id “${id}”.`, "error");
    return;
  }
  let data;
  try {
    data = await resp.json();
  } catch (err) {
    say(`The service answered ${resp.status} with something that is not JSON.`, "error");
    return;
  }
  if (!resp.ok) {
    say(`The service answered ${resp.status}: ${data.error || "unknown error"}`, "error");
    return;
  }
  say("");
  show(data);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const id = input.value.trim();
  // Keep the lookup in the address bar, so it can be linked and reloaded.
  const url = new URL(window.location);
  url.searchParams.set("id", id);
  history.pushState(null, "", url);
  lookup(id);
});

function fromAddress() {
  const id = new URLSearchParams(window.location.search).get("id") || "";
  input.value = id;
  lookup(id);
}

window.addEventListener("popstate", fromAddress);
fromAddress();
