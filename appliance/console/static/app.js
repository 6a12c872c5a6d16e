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

function drawAlarms(alarms) {
  const body = document.querySelector("#alarms tbody");
  body.replaceChildren();
  alarms.sort((a, b) => (rank[a.priority] - rank[b.priority]) || String(a.onset).localeCompare(String(b.onset)));
  let paused = 0;
  for (const a of alarms) {
    if (a.paused_s) paused = Math.max(paused, a.paused_s);
    const ack = el("button", "Acknowledge", "ack");
    ack.addEventListener("click", async () => {
      const r = await post("/api/ack", { bed: a.bed_id, rule: a.rule_id });
      notice(r.ok ? "acknowledged: " + a.message + " (bed " + a.bed_id + ")" : "NOT DONE: " + r.text);
    });
    const state = a.state.replace("_", " ") + (a.paused_s ? " " + countdown(a.paused_s) : "");
    const tr = row([el("span", a.priority.toUpperCase(), "priority " + a.priority), a.bed_id, a.device_id || "",
      clock(a.onset), state, a.message, ack]);
    tr.dataset.priority = a.priority;
    tr.className = "alarm";
    body.appendChild(tr);
  }
  if (!alarms.length) body.appendChild(row(["none"]));
  document.getElementById("pause-countdown").textContent = paused ? "AUDIO PAUSED — " + countdown(paused) + " left" : "";
}

function drawBeds(beds) {
  const body = document.querySelector("#beds tbody");
  body.replaceChildren();
  const select = document.getElementById("pair-device");
  const chosen = select.value;
  select.replaceChildren();
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
      const opt = el("option", d.device_id); opt.value = d.device_id; select.appendChild(opt);
    }
  }
  if (chosen) select.value = chosen;
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
