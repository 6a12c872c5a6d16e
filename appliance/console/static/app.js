// The console page: polls /api/view once a second and draws the same snapshot as
// `bedside top`; buttons post to /api/ack, /api/pause, /api/pair with the CSRF token.
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;
const rank = { high: 0, medium: 1, low: 2 };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function clock(stamp) { return stamp && stamp.length >= 19 ? stamp.slice(11, 19) : "--:--:--"; }
function countdown(s) { const w = Math.ceil(s); return Math.floor(w / 60) + ":" + String(w % 60).padStart(2, "0"); }
function row(cells) {
  const tr = el("tr");
  for (const c of cells) { const td = el("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c; tr.appendChild(td); }
  return tr;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json", "X-Bedside-CSRF": csrf },
    body: JSON.stringify(body || {}), credentials: "same-origin",
  });
  let data = {};
  try { data = await r.json(); } catch (e) { data = { error: "HTTP " + r.status }; }
  return { ok: r.ok, text: data.done || data.error || ("HTTP " + r.status) };
}
function notice(text) { document.getElementById("notice").textContent = new Date().toISOString().slice(11, 19) + "  " + text; }

// Rows with buttons are updated in place, keyed, never redrawn: the page polls every
// second, and a row replaced under the pointer or the keyboard focus ate a nurse's click
// (pressed on the old button, released on the new one) and dropped the focus.
function keep(body, key, make) {
  for (const tr of body.children) if (tr.dataset.key === key) return tr;
  return make();
}
function setCells(tr, from, texts) {
  texts.forEach((text, i) => { const td = tr.cells[from + i]; if (td.textContent !== text) td.textContent = text; });
}
function place(body, rows) {
  // Rows no longer listed go first, so that the rows staying are not moved (a node taken
  // out of the page loses its focus), then new rows (or a reordered one) go in place.
  const listed = new Set(rows);
  for (const tr of [...body.children]) if (!listed.has(tr)) tr.remove();
  rows.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
}

function alarmRow(a) {
  const ack = el("button", "Acknowledge", "ack");
  const tr = row([el("span", "", ""), "", "", "", "", "", ack]);
  ack.addEventListener("click", async () => {
    const r = await post("/api/ack", { bed: tr.dataset.bed, rule: tr.dataset.rule });
    notice(r.ok ? "acknowledged: " + tr.dataset.message + " (bed " + tr.dataset.bed + ")" : "NOT DONE: " + r.text);
  });
  tr.className = "alarm";
  tr.dataset.bed = a.bed_id; tr.dataset.rule = a.rule_id;
  return tr;
}

function drawAlarms(alarms) {
  const body = document.querySelector("#alarms tbody");
  alarms.sort((a, b) => (rank[a.priority] - rank[b.priority]) || String(a.onset).localeCompare(String(b.onset)));
  let paused = 0;
  const rows = [];
  for (const a of alarms) {
    if (a.paused_s) paused = Math.max(paused, a.paused_s);
    const key = "alarm\u0000" + a.bed_id + "\u0000" + a.rule_id;
    const tr = keep(body, key, () => alarmRow(a));
    tr.dataset.key = key;
    tr.dataset.priority = a.priority; tr.dataset.message = a.message;
    const badge = tr.cells[0].firstChild;
    badge.textContent = a.priority.toUpperCase(); badge.className = "priority " + a.priority;
    const state = a.state.replace("_", " ") + (a.paused_s ? " " + countdown(a.paused_s) : "");
    setCells(tr, 1, [a.bed_id, a.device_id || "", clock(a.onset), state, a.message].map(String));
    rows.push(tr);
  }
  if (!alarms.length) rows.push(keep(body, "none", () => { const tr = row(["none"]); tr.dataset.key = "none"; return tr; }));
  place(body, rows);
  document.getElementById("pause-countdown").textContent = paused ? "AUDIO PAUSED — " + countdown(paused) + " left" : "";
}

function drawBeds(beds) {
  const body = document.querySelector("#beds tbody");
  body.replaceChildren();
  const select = document.getElementById("pair-device");
  const chosen = select.value;
  const ids = beds.flatMap((bed) => bed.devices.map((d) => d.device_id));
  // The list is rebuilt only when the devices change: an open drop-down stays open.
  const same = ids.length === select.options.length && ids.every((id, i) => select.options[i].value === id);
  if (!same) select.replaceChildren();
  for (const bed of beds) {
    for (const d of bed.devices) {
      const values = el("div");
      for (const v of d.values) {
        const span = el("span", "", "value" + (v.stale ? " stale" : ""));
        span.appendChild(el("span", v.label + " "));
        const mark = { questionable: "?", invalid: "!" }[v.quality] || "";
        span.appendChild(el("b", v.value + mark));
        span.appendChild(el("span", (v.unit ? " " + v.unit : "") + (v.stale ? " (" + Math.round(v.age_s) + " s ago)" : "")));
        values.appendChild(span);
      }
      body.appendChild(row([bed.bed_id, d.device_id + (d.protocol ? " (" + d.protocol + ")" : ""),
        el("span", d.link, "link-" + d.link), values]));
      if (!same) { const opt = el("option", d.device_id); opt.value = d.device_id; select.appendChild(opt); }
    }
  }
  if (chosen && !same) select.value = chosen;
}

function drawEvents(events) {
  const body = document.querySelector("#events tbody");
  body.replaceChildren();
  for (const e of events) {
    const tr = row([e.scope, e.device_id, e.kind.replace(/_/g, " ") + (e.active ? "" : " (ended)"), String(e.count), clock(e.last), e.detail]);
    if (!e.active) tr.className = "ended";
    body.appendChild(tr);
  }
}

async function refresh() {
  try {
    const r = await fetch("/api/view", { credentials: "same-origin" });
    const data = await r.json();
    if (!r.ok) { document.getElementById("status").textContent = data.error || ("HTTP " + r.status); return; }
    const v = data.view;
    document.getElementById("gateway").textContent = v.gateway_id;
    const st = v.status || {};
    document.getElementById("status").textContent = clock(v.time) + " UTC  " + v.observations + " observations" +
      (st.store ? "  store: " + st.store : "") + (st.uplink ? "  uplink: " + st.uplink : "");
    drawAlarms(v.alarms); drawBeds(v.beds); drawEvents(v.events);
    document.body.dataset.loaded = "1";
    window.polls = (window.polls || 0) + 1;  // views drawn (the browser test waits on it)
  } catch (e) {
    document.getElementById("status").textContent = "cannot reach the console: " + e;
  }
}

document.getElementById("ack-all").addEventListener("click", async () => {
  const r = await post("/api/ack", {}); notice(r.ok ? "acknowledged: all alarms" : "NOT DONE: " + r.text); refresh();
});
document.getElementById("pause-all").addEventListener("click", async () => {
  const r = await post("/api/pause", {}); notice(r.ok ? "audio paused (the visual signal stays)" : "NOT DONE: " + r.text); refresh();
});
document.getElementById("pair").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await post("/api/pair", {
    device_id: document.getElementById("pair-device").value,
    bed: document.getElementById("pair-bed").value,
    patient: document.getElementById("pair-patient").value || null,
  });
  const out = document.getElementById("pair-result");
  out.textContent = r.ok ? r.text : "Refused: " + r.text;
  out.className = r.ok ? "" : "refused";
});
refresh();
setInterval(refresh, 1000);
