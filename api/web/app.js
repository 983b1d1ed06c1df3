/* Lorong crew page (README: "The crew page"). Plain JS, no build step, nothing inline (a strict CSP).
 * Today's route, the alerts the token's role acts on, a Leaflet map; times in the city's zone (GET /me);
 * Bahasa Indonesia, or English. The last answers stay in localStorage, shown while there is no signal
 * (no byte for NET_TIMEOUT_MS); each action is queued with an id sent as Idempotency-Key and sent again
 * when back online, or after RETRY_MS when a server failed. sw.js keeps the page's files. */
"use strict";

const I18N = {
  id: {
    subtitle: "Petugas kebersihan", sub_officer: "Petugas lingkungan", sub_technician: "Teknisi perangkat",
    sub_supervisor: "Pengawas", sub_admin: "Admin", logout: "Ganti token", loginTitle: "Masukkan token API",
    loginHelp: "Minta token ke admin. Token disimpan di ponsel ini saja.", tokenLabel: "Token", save: "Simpan",
    activeAlerts: "peringatan aktif", fullBins: "tong penuh", refresh: "Muat ulang", updated: "Diperbarui",
    offlineAt: "Tanpa sinyal · data pukul", pending: "tindakan menunggu sinyal", tabRoute: "Hari ini",
    tabAlerts: "Peringatan", tabMap: "Peta", kecamatan: "Kecamatan", allKec: "Semua kecamatan", vehicle: "Truk",
    noAlerts: "Tidak ada peringatan aktif.", noRoute: "Belum ada rute untuk hari ini.", noData: "tanpa data",
    ack: "Saya tangani", clear: "Selesaikan…", history: "Riwayat", ackedBy: "Ditangani oleh", since: "sejak",
    sinceBefore: "sejak sebelum",
    fill: "Isi", onArrival: "saat tiba", eta: "perkiraan tiba", stops: "perhentian", done: "selesai", failedN: "tidak bisa", navigate: "Buka di peta",
    emptied: "Sudah dikosongkan", cantEmpty: "Tidak bisa dikosongkan", emptiedAt: "Dikosongkan",
    problem: "Tidak bisa dikosongkan",
    clearTitle: "Selesaikan peringatan ini?", clearText: "Peringatan hilang dari daftar semua petugas. Alasannya:",
    cantTitle: "Lapor: tong ini tidak bisa dikosongkan", cantText: "Apa sebabnya? Pengawas akan diberi tahu.",
    note: "Catatan (boleh kosong)", pickReason: "Pilih alasan.", cancel: "Batal", send: "Kirim laporan",
    r_emptied: "Sudah dikosongkan", r_false: "Alarm palsu", r_fixed: "Sudah diperbaiki", r_other: "Lainnya",
    opened: "dibuka", acknowledged: "ditangani", cleared: "diselesaikan", escalated: "naik", deescalated: "turun",
    badToken: "Token tidak diterima. Periksa lagi atau minta token baru ke admin.",
    forbidden: "Token ini tidak boleh melakukan itu.", netError: "Tidak ada sinyal: disimpan, dikirim nanti.",
    netLogin: "Tidak ada sinyal. Coba lagi saat ada sinyal.", lose: "{n} tindakan belum terkirim - akan hilang. Tetap ganti token?",
    logoutAsk: "Keluar dan hapus token dari HP ini? Untuk masuk lagi perlu token dari admin.",
    unsent: "Belum terkirim, tersimpan di HP", sending: "Mengirim {n} tindakan…",
    next: "Berikutnya", undo: "Urungkan", undoAsk: "Dikosongkan: {bin}", undone: "Dibatalkan: {bin} belum dikosongkan",
    doneAck: "Ditangani", doneClear: "Peringatan selesai", doneEmptied: "Tercatat: sudah dikosongkan",
    doneCant: "Terkirim ke pengawas", sentOne: "Terkirim: {n} tindakan ({bin})",
    sentMany: "Terkirim: {n} tindakan ({bin})", already: "Sudah ditangani orang lain",
    serverError: "Server tidak menjawab: disimpan, dikirim nanti.",
    refused: "Server menolak tindakan ini, tidak dikirim lagi",
    k_ack: "Saya tangani", k_clear: "Selesaikan", k_emptied: "Sudah dikosongkan", k_cant: "Tidak bisa dikosongkan",
    loginPending: "{n} tindakan belum terkirim (dicatat oleh {by}). Masukkan token untuk mengirimnya.",
    sendAs: "{n} tindakan dicatat oleh {by}, bukan {me}. Kirim atas nama {me}?\nBatal = hapus tindakan itu.",
    dropped: "{n} tindakan milik {by} dihapus, tidak dikirim.", someone: "token lama",
    who_system: "sistem", who_crew: "petugas", who_officer: "petugas lingkungan", who_technician: "teknisi",
    who_supervisor: "pengawas", who_admin: "admin",
  },
  en: {
    subtitle: "Sanitation crew", sub_officer: "Environment officer", sub_technician: "Device technician",
    sub_supervisor: "Supervisor", sub_admin: "Admin", logout: "Change token", loginTitle: "Enter your API token",
    loginHelp: "Ask an admin for a token. It is kept on this phone only.", tokenLabel: "Token", save: "Save",
    activeAlerts: "active alerts", fullBins: "full bins", refresh: "Refresh", updated: "Updated",
    offlineAt: "Offline · data from", pending: "actions waiting for signal", tabRoute: "Today", tabAlerts: "Alerts",
    tabMap: "Map", kecamatan: "Kecamatan", allKec: "All kecamatan", vehicle: "Truck", noAlerts: "No active alerts.",
    noRoute: "No route for today yet.", noData: "no data", ack: "I'm on it", clear: "Clear…", history: "History",
    ackedBy: "Taken by", since: "since", sinceBefore: "since before", fill: "Fill", onArrival: "on arrival", eta: "expected", stops: "stops",
    done: "done", failedN: "could not", navigate: "Open in maps", emptied: "Emptied", cantEmpty: "Can't empty this bin",
    emptiedAt: "Emptied", problem: "Could not empty", clearTitle: "Clear this alert?", clearText: "It leaves every crew's list. Why:",
    cantTitle: "Report: this bin can't be emptied", cantText: "What is stopping you? The supervisor will be told.",
    note: "Note (optional)", pickReason: "Pick a reason.", cancel: "Cancel", send: "Send report",
    r_emptied: "Emptied", r_false: "False alarm", r_fixed: "Fixed", r_other: "Other",
    opened: "opened", acknowledged: "taken", cleared: "cleared", escalated: "escalated", deescalated: "lowered",
    badToken: "Token not accepted. Check it, or ask an admin for a new one.",
    forbidden: "This token may not do that.", netError: "No signal: kept, will be sent later.",
    netLogin: "No signal. Try again when you have signal.", lose: "{n} actions not sent yet - they will be lost. Change token anyway?",
    logoutAsk: "Log out and remove the token from this phone? To log in again you need a token from the admin.",
    unsent: "Not sent yet, kept on this phone", sending: "Sending {n} actions…",
    next: "Next", undo: "Undo", undoAsk: "Emptied: {bin}", undone: "Undone: {bin} not emptied",
    doneAck: "Taken", doneClear: "Alert cleared", doneEmptied: "Recorded: emptied", doneCant: "Sent to the supervisor",
    sentOne: "Sent: {n} action ({bin})", sentMany: "Sent: {n} actions ({bin})",
    already: "Already handled by someone else",
    serverError: "The server did not answer: kept, will be sent later.",
    refused: "The server refused this action; it will not be sent again",
    k_ack: "I'm on it", k_clear: "Clear", k_emptied: "Emptied", k_cant: "Can't empty",
    loginPending: "{n} actions not sent yet (recorded by {by}). Enter a token to send them.",
    sendAs: "{n} actions were recorded by {by}, not {me}. Send them as {me}?\nCancel = delete them.",
    dropped: "{n} actions of {by} deleted, not sent.", someone: "the old token",
    who_system: "system", who_crew: "crew", who_officer: "officer", who_technician: "technician",
    who_supervisor: "supervisor", who_admin: "admin",
  },
};
const CLEAR_REASONS = ["r_emptied", "r_false", "r_fixed", "r_other"];
/* What a clear's reason says in the database: the same words whatever the screen's language (the API's
 * own examples, POST /alerts/{id}/clear), shown in the reader's language in the history. */
const CLEAR_CODES = { r_emptied: "emptied", r_false: "false alarm", r_fixed: "fixed", r_other: "other" };
const NET_TIMEOUT_MS = 4500;
/* How long a request may wait for an answer, or for its next bytes, before the page treats it as "no
 * signal" (the last data stays shown, actions stay queued); a slow link that keeps bringing bytes is a
 * signal: a city's bins take 7-13 s at 100-200 kbit/s. */
const RETRY_MS = 15000;
/* A queued action the server could not take (5xx, 408, 429, no answer) is tried again this soon. */
const UNDO_MS = 4000;
/* "Emptied" cannot be taken back once sent and the stop cards look alike: it waits this long on the phone
 * while the toast offers "Undo" (the short end of a snackbar with an action, Material Design: 4-10 s). */
const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const MAKASSAR = [-5.1477, 119.4327];
const store = {
  get(key, fallback) { try { return JSON.parse(localStorage.getItem("lorong." + key)) ?? fallback; } catch (e) { return fallback; } },
  set(key, value) { localStorage.setItem("lorong." + key, JSON.stringify(value)); },
};
const state = {
  lang: localStorage.getItem("lorong.lang") || "id", token: localStorage.getItem("lorong.token") || "",
  data: store.get("data", null), queue: store.get("queue", []), online: true, flushing: false,
  tab: localStorage.getItem("lorong.tab") || "", kec: localStorage.getItem("lorong.kec") || "", hist: {}, map: null, layer: null, timer: null,
};

const $ = (id) => document.getElementById(id);
const t = (key) => (I18N[state.lang] && I18N[state.lang][key]) || I18N.en[key] || key;
/* The words of `key` with each {name} replaced by vars[name]; a number as the page's language writes it. */
const tf = (key, vars) => t(key).replace(/\{(\w+)\}/g, (m, k) => (k in vars ? (typeof vars[k] === "number" ? num(vars[k]) : vars[k]) : m));
/* Numbers as the page's language writes them: "11,2 km" and "1.234" in Bahasa, "11.2 km" and "1,234" in English
 * (a point groups thousands in Bahasa: "11.2 km" would read as eleven thousand two hundred). */
const locale = () => (state.lang === "id" ? "id-ID" : "en-GB");
const num = (x, fixed) => new Intl.NumberFormat(locale(), fixed === undefined ? { maximumFractionDigits: 1 }
  : { minimumFractionDigits: fixed, maximumFractionDigits: fixed }).format(x); // up to 1 decimal, or exactly `fixed`

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== "") node.append(c);
  return node;
}

function newId() { // a key made on the phone (crypto.randomUUID needs a secure context; this does not)
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// Indonesia's names of its zones (Keppres 41/1987: WIB, WITA, WIT); elsewhere the zone's short name from Intl.
const ZONE_ABBR = { "Asia/Jakarta": "WIB", "Asia/Pontianak": "WIB", "Asia/Makassar": "WITA", "Asia/Jayapura": "WIT" };
const zone = () => (state.data && state.data.me && state.data.me.timezone) || "Asia/Makassar";

function zoneAbbr(tz, at = new Date()) {
  if (ZONE_ABBR[tz]) return ZONE_ABBR[tz];
  const part = new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "short" }).formatToParts(at)
    .find((p) => p.type === "timeZoneName");
  return part ? part.value : tz;
}

function localTime(iso, withZone = true) {
  // local time of the token's city (GET /me timezone); the date is shown only when it is not today there.
  if (!iso) return "–";
  const when = new Date(iso);
  const tz = zone();
  const day = (d) => d.toLocaleDateString("en-CA", { timeZone: tz });
  const opts = { timeZone: tz, hour: "2-digit", minute: "2-digit", hour12: false };
  if (day(when) !== day(new Date())) Object.assign(opts, { day: "numeric", month: "short" });
  const text = new Intl.DateTimeFormat(locale(), opts).format(when);
  return withZone ? text + " " + zoneAbbr(tz, when) : text;
}

function fillClass(level) {
  if (level === null || level === undefined) return "none";
  return level >= 0.95 ? "over" : level >= 0.8 ? "full" : level >= 0.5 ? "half" : "ok";
}
const FILL_COLOR = { none: "#9aa0a6", over: "#d93025", full: "#e8710a", half: "#e0a100", ok: "#2e9e4f" };
const pct = (level) => (level === null || level === undefined ? "–"
  : new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 0 }).format(level));

function toast(msg, undo, ms = 3000) {
  // msg: text or a node, shown for `ms`; undo: {label, run, ms} adds a button that runs `run` and stays for `ms`
  const box = $("toast");
  box.replaceChildren(typeof msg === "string" ? el("span", {}, msg) : msg);
  if (undo) {
    const b = el("button", { type: "button", class: "undo" }, undo.label);
    b.addEventListener("click", () => { box.hidden = true; undo.run(); });
    box.append(b);
  }
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, undo ? undo.ms : ms);
}

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options) {
  // no answer, or no byte of it, for NET_TIMEOUT_MS = no signal: the error has no status, as offline
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({ Authorization: "Bearer " + state.token }, opts.headers || {});
  const ctl = new AbortController();
  let timer;
  const alive = () => { clearTimeout(timer); timer = setTimeout(() => ctl.abort(), NET_TIMEOUT_MS); };
  alive();
  opts.signal = ctl.signal;
  try {
    const resp = await fetch(path, opts);
    alive(); // the head came
    const reader = resp.body.getReader(), parts = [];
    for (let r; !(r = await reader.read()).done; alive()) parts.push(r.value); // ends with the answer
    const text = await new Blob(parts).text();
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = JSON.parse(text).detail || detail; } catch (e) { /* not JSON */ }
      throw new HttpError(resp.status, detail);
    }
    return JSON.parse(text);
  } finally {
    clearTimeout(timer);
  }
}

/* Worth sending again later, exactly as with no signal: no answer at all, 408 Request Timeout,
 * 429 Too Many Requests, or a 5xx (the server or a gateway on the way failed, not the action;
 * RFC 9110 sections 15.5.9 and 15.6, RFC 6585 section 4). Any other 4xx says the action itself is wrong. */
const retryable = (err) => !err.status || err.status === 408 || err.status === 429 || err.status >= 500;

/* ---- words, places, links --------------------------------------------------------------------- */
const types = () => (state.data && state.data.types) || { types: [], cant_empty_reasons: {} };
const typeOf = (name) => types().types.find((x) => x.name === name);
function words(name) {
  const spec = typeOf(name);
  return (spec && (spec.words[state.lang] || spec.words.en)) || { title: name, action: "" };
}
const place = (x) => [x.street, x.kelurahan, x.landmark].filter(Boolean).join(" · ");
function links(x, label) { // the phone's own map app on the bin (geo: URI, RFC 5870): one map action a card,
  // and one that works without signal (the app keeps its maps and knows where the phone is)
  if (x.lat === null || x.lat === undefined || x.lon === null || x.lon === undefined) return document.createDocumentFragment();
  const ll = `${x.lat},${x.lon}`;
  return el("div", { class: "links" },
    el("a", { class: "btn nav", href: `geo:${ll}?q=${ll}(${encodeURIComponent(label)})` }, "➤ " + t("navigate")));
}
const me = () => (state.data && state.data.me) || { role: "crew", acts_on: [], may_collect: false };
const mayAct = (type) => me().acts_on.includes(type);
const actor = (who) => `${who.role}:${who.name || ""}`; // as the server writes it (history, collections)

function actorWords(text) { // "crew:truk-07" -> "petugas truk-07", "system" -> "sistem"; other text as it is
  const [role, ...name] = String(text || "").split(":");
  const word = I18N.en["who_" + role] ? t("who_" + role) : null;
  if (!word) return text || "";
  return name.length ? `${word} ${name.join(":")}` : word;
}

/* ---- rendering -------------------------------------------------------------------------------- */
function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  const role = me().role;
  const area = (me().area || []).join(", ");
  $("subtitle").textContent = (role === "crew" || !state.data ? t("subtitle") : t("sub_" + role)) + (area ? " · " + area : "");
  $("lang").textContent = state.lang === "id" ? "EN" : "ID";
  $("refresh").setAttribute("aria-label", t("refresh"));
  $("refresh").title = t("refresh");
  document.title = "Lorong · " + $("subtitle").textContent;
  renderLoginPending();
  render();
  if (!$("app").hidden) reopenAsk();
}

function showLogin(message) {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  renderLoginPending();
  clearInterval(state.timer);
}

const queuedBy = (list = state.queue) => [...new Set(list.map((a) => (a.by ? actorWords(a.by) : t("someone"))))].join(", ");

function renderLoginPending() { // a revoked token keeps its queue: say so on the login form
  $("login-pending").hidden = state.queue.length === 0;
  $("login-pending").textContent = tf("loginPending", { n: state.queue.length, by: queuedBy() });
}

/* Actions queued under one token and a log-in with a token of someone else (the first one was revoked,
 * or the phone passed to another crew). The taps were real work by the first person: sending them
 * silently would put another name on that work, dropping them silently would lose a pickup the route
 * and the fill-level analytics count on. So ask the person holding the phone, naming both; if they
 * say no, the actions are deleted and the page says so. Actions of the same person (a new token for
 * the same name) are sent without asking. */
function adoptQueue(who) {
  const mine = actor(who);
  const others = state.queue.filter((a) => a.by !== mine);
  if (!others.length) return;
  const fill = (key) => tf(key, { n: others.length, by: queuedBy(others), me: actorWords(mine) });
  if (window.confirm(fill("sendAs"))) {
    for (const a of others) a.by = mine;
  } else {
    state.queue = state.queue.filter((a) => a.by === mine);
    toast(fill("dropped"));
  }
  store.set("queue", state.queue);
}

/* A tick on the phone is not yet a pickup on the server: a stop or an alert whose action is still queued
 * says so on its card, until the server has taken it (a worker who sees only a tick walks on). */
const unsentFor = (pred) => (state.queue.some(pred) ? el("div", { class: "unsent" }, t("unsent")) : null);

function binsById() {
  const out = new Map();
  for (const b of (state.data && state.data.bins) || []) out.set(b.id, b);
  return out;
}

function alertFill(a, bins) {
  const b = bins.get(a.device_id);
  if (b && b.fillingLevel !== null && b.fillingLevel !== undefined) return b.fillingLevel;
  return typeof a.details.fillingLevel === "number" ? a.details.fillingLevel : null;
}

function meter(fill) {
  const bar = el("b", { class: "fill-" + fillClass(fill) });
  bar.style.width = Math.min(100, fill * 100) + "%"; // CSSOM, allowed by a strict style-src
  return el("div", { class: "meter", "aria-label": `${t("fill")} ${pct(fill)}` }, bar);
}

function alertCard(a, bins) {
  const fill = alertFill(a, bins);
  const w = words(a.type);
  const card = el("article", { class: `alert ${a.severity}${a.acknowledged ? " acked" : ""}`, "data-alert-id": String(a.id),
    "data-type": a.type });
  card.append(el("div", { class: "row" }, el("span", { class: "title" }, w.title),
    el("span", { class: `sev ${a.severity}` }, ((types().severity_words || {})[a.severity] || {})[state.lang] || a.severity)));
  card.append(el("div", { class: "id" }, `${a.device_id} · ${a.kecamatan || "–"}`));
  if (place(a)) card.append(el("div", { class: "where" }, place(a)));
  if (fill !== null) card.append(meter(fill));
  const facts = [fill !== null ? `${t("fill")} ${pct(fill)}` : null,
    typeof a.details.pm25_1h_mean === "number" ? `${num(a.details.pm25_1h_mean)} µg/m³` : null,
    a.details.reason ? (types().cant_empty_reasons[a.details.reason] || {})[state.lang] || a.details.reason : null,
    a.details.note || null,
    // since: when the bin got full; since_exact false: full already at the first reading the rule read
    `${t(a.details.since_exact === false ? "sinceBefore" : "since")} ${localTime(a.details.since || a.started_at)}`];
  card.append(el("div", { class: "meta" }, facts.filter(Boolean).join(" · ")));
  if (w.action) card.append(el("div", { class: "todo" }, w.action));
  card.append(links(a, `${a.device_id} ${a.street || ""}`.trim()));
  if (a.acknowledged) card.append(el("div", { class: "ackline" }, `✓ ${t("ackedBy")} ${actorWords(a.ack_by)} · ${localTime(a.ack_at)}`));
  const unsent = unsentFor((q) => q.alert === a.id);
  if (unsent) card.append(unsent);
  const hist = el("button", { type: "button", class: "link history" }, t("history"));
  hist.addEventListener("click", () => showHistory(a.id, hist));
  const actions = el("div", { class: "actions" });
  if (mayAct(a.type)) {
    const ack = el("button", { type: "button", class: "btn primary ack", disabled: a.acknowledged }, t("ack"));
    ack.addEventListener("click", () => act({ kind: "ack", alert: a.id, dev: a.device_id, path: `/alerts/${a.id}/ack` }));
    const clear = el("button", { type: "button", class: "btn clear" }, t("clear"));
    clear.addEventListener("click", () => askClear(a));
    actions.append(ack, clear);
  }
  actions.append(hist);
  card.append(actions);
  if (state.hist[a.id]) card.append(historyList(state.hist[a.id]));
  return card;
}

function historyList(rows) {
  return el("ol", { class: "hist" }, ...rows.map((h) => el("li", {},
    `${localTime(h.at)} · ${t(h.action)} · ${actorWords(h.actor)}` + (h.reason ? ` · ${reasonWords(h.reason)}` : ""))));
}

function reasonWords(text) { // "fixed: lid bolted" -> "Sudah diperbaiki: lid bolted"; other text as it is
  const by = /^emptied by (\S+?)(: .*)?$/.exec(text); // written by POST /bins/{id}/emptied
  if (by) return `${t("r_emptied")} (${actorWords(by[1])})${by[2] || ""}`;
  const cut = text.indexOf(": ");
  const code = cut < 0 ? text : text.slice(0, cut);
  const key = Object.keys(CLEAR_CODES).find((k) => CLEAR_CODES[k] === code);
  return key ? t(key) + (cut < 0 ? "" : text.slice(cut)) : text;
}

async function showHistory(id, button) { // kept open across re-renders (state.hist)
  if (state.hist[id]) { delete state.hist[id]; render(); return; }
  button.disabled = true;
  try {
    const sent = state.sent; // an action that reaches the server meanwhile may be missing from this answer
    state.hist[id] = await api(`/alerts/${id}/history`);
    render();
    if (state.sent !== sent) refreshHistory(id);
  } catch (err) {
    button.disabled = false;
    toast(retryable(err) ? t("netError") : `${t("refused")} (${err.status}).`);
  }
}

async function refreshHistory(id) { // an open history, asked again: an action on its alert reached the server
  try {
    const rows = await api(`/alerts/${id}/history`);
    if (state.hist[id]) { state.hist[id] = rows; render(); }
  } catch (err) { /* the list shown stays; the next tap on History asks again */ }
}

function renderAlerts() {
  const bins = binsById();
  const kec = state.kec;
  const all = ((state.data && state.data.alerts) || []).filter((a) => mayAct(a.type));
  // most severe first, then the fullest bin, then the oldest alert: a total order, so refreshes do not reshuffle
  const key = (a) => [SEVERITY_RANK[a.severity] ?? 9, -(alertFill(a, bins) ?? -1), a.id];
  const byKey = (x, y) => { const kx = key(x), ky = key(y); return kx[0] - ky[0] || kx[1] - ky[1] || kx[2] - ky[2]; };
  const shown = all.filter((a) => !kec || a.kecamatan === kec).sort(byKey);
  const groups = new Map();
  for (const a of shown) {
    const name = a.kecamatan || "–";
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(a);
  }
  const box = $("alerts");
  box.replaceChildren();
  for (const [name, items] of groups) {
    const section = el("section", { class: "group", "data-kecamatan": name },
      el("h2", {}, el("span", {}, name), el("span", {}, num(items.length))));
    for (const a of items) section.append(alertCard(a, bins));
    box.append(section);
  }
  $("empty").hidden = shown.length > 0;
  $("n-alerts").textContent = num(all.length);
  $("n-full").textContent = num(((state.data && state.data.bins) || []).filter((b) => b.status === "full").length);
  const kecs = [...new Set(all.map((a) => a.kecamatan).filter(Boolean))].sort();
  $("kec").replaceChildren(el("option", { value: "" }, t("allKec")), ...kecs.map((k) => el("option", { value: k }, k)));
  $("kec").value = kecs.includes(kec) ? kec : "";
}

function currentRoute() {
  const routes = (state.data && state.data.routes) || [];
  const wanted = Number(localStorage.getItem("lorong.vehicle") || (routes[0] && routes[0].vehicle));
  return routes.find((r) => r.vehicle === wanted) || routes[0] || null;
}

function stopItem(s, next) {
  const done = Boolean(s.emptiedAt || s.problem);
  const li = el("li", { class: "stop" + (s.emptiedAt ? " done" : s.problem ? " done failed" : "") + (next ? " next-stop" : ""),
    "data-stop-id": s.id });
  const status = s.emptiedAt ? `✓ ${t("emptiedAt")} ${localTime(s.emptiedAt, false)}`
    : s.problem ? `✗ ${t("problem")}: ${(types().cant_empty_reasons[s.problem] || {})[state.lang] || s.problem}` : null;
  li.append(el("div", { class: "row" }, el("span", { class: "n" }, num(s.order)), el("span", { class: "title" }, s.id),
    status ? el("span", { class: "status" }, status) : null, next ? el("span", { class: "next" }, t("next")) : null));
  const unsent = unsentFor((q) => q.bin === s.id);
  if (unsent) li.append(unsent);
  li.append(el("div", { class: "where" }, place(s) || s.kecamatan || "–"));
  if (s.fillingLevel !== null && s.fillingLevel !== undefined) {
    li.append(meter(s.fillingLevel));
    const later = !done && s.expectedFillingLevel !== null && s.expectedFillingLevel !== undefined
      ? ` → ${pct(s.expectedFillingLevel)} ${t("onArrival")}` : "";
    li.append(el("div", { class: "meta" }, `${t("fill")} ${pct(s.fillingLevel)}${later}` + // the time on one line with its words
      (!done && s.eta ? ` · ${t("eta")}\u00a0${localTime(s.eta, false)}` : "")));
  }
  if (!s.emptiedAt) { // a "can't empty" stop keeps Emptied: the crew may come back once the way is clear
    li.append(links(s, `${s.id} ${s.street || ""}`.trim()));
    if (me().may_collect) {
      const ok = el("button", { type: "button", class: "btn primary emptied" }, t("emptied"));
      ok.addEventListener("click", () => act({ kind: "emptied", bin: s.id, path: `/bins/${encodeURIComponent(s.id)}/emptied`,
        body: { at: new Date().toISOString() } }, true));
      const no = el("button", { type: "button", class: "btn cant" }, t("cantEmpty"));
      no.addEventListener("click", () => askCant(s));
      li.append(el("div", { class: "actions" }, ok, s.problem ? null : no));
    }
  }
  return li;
}

function renderRoute() {
  const routes = (state.data && state.data.routes) || [];
  const route = currentRoute();
  $("vehicle-box").hidden = routes.length < 2;
  const sel = $("vehicle");
  sel.replaceChildren(...routes.map((r) => el("option", { value: String(r.vehicle) },
    `${t("vehicle")} ${num(r.vehicle + 1)} · ${num(r.stops.length)} ${t("stops")}`)));
  if (route) sel.value = String(route.vehicle);
  $("no-route").hidden = Boolean(route);
  // the first stop neither emptied nor reported is the next one: finished stops stay at the top of the list
  const next = route ? route.stops.find((s) => !s.emptiedAt && !s.problem) : null;
  $("stops").replaceChildren(...(route ? route.stops.map((s) => stopItem(s, s === next)) : []));
  // emptied and "can't empty" counted apart: a blocked stop is not done, the bin is still full
  const emptied = route ? route.stops.filter((s) => s.emptiedAt).length : 0;
  const failed = route ? route.stops.filter((s) => !s.emptiedAt && s.problem).length : 0;
  $("route-summary").textContent = route ? [`${num(route.stops.length)} ${t("stops")}`, `${num(emptied)} ${t("done")}`,
    failed ? `${num(failed)} ${t("failedN")}` : null, `${num(route.distance_km, 1)} km`].filter(Boolean).join(" · ") : "";
}

function renderNet() {
  const at = state.data && state.data.at;
  $("net-label").textContent = state.online ? t("updated") : t("offlineAt");
  $("net").classList.toggle("off", !state.online);
  $("updated").textContent = at ? localTime(at) : "–"; // with its zone offline too: the phone's clock may be in another
  $("pending").hidden = state.queue.length === 0;
  // sending over a slow signal is not "waiting for signal": the worker would walk back to find one
  const sending = (state.flushing || state.holding) && state.online && navigator.onLine;
  $("pending").textContent = sending ? tf("sending", { n: state.queue.length }) : `${num(state.queue.length)} ${t("pending")}`;
}

function render() {
  if ($("app").hidden) return;
  $("tab-route").hidden = !me().may_collect;
  if (state.data && state.tab === "route" && !me().may_collect) selectTab("alerts");
  renderNet();
  renderAlerts();
  renderRoute();
  if (state.map) drawMap();
}

/* ---- data: load, keep, act -------------------------------------------------------------------- */
function keep() { store.set("data", state.data); store.set("queue", state.queue); }

async function load() {
  $("refresh").setAttribute("aria-busy", "true"); // the tap is seen at once, the answer may take NET_TIMEOUT_MS
  try {
    const [who, typesOut, alerts, bins] = await Promise.all([api("/me"), api("/alerts/types"),
      api("/alerts?status=active&limit=500"), api("/bins?limit=2000")]);
    const routes = who.may_collect ? await api("/routes") : [];
    state.data = { me: who, types: typesOut, alerts, bins, routes, at: new Date().toISOString() };
    state.online = navigator.onLine; // an answer to a request sent before the signal went is no signal now
    for (const a of state.queue) optimistic(a); // what is still queued stays shown as done
    keep();
    applyLanguage();
    if (!state.tab) selectTab(who.may_collect ? "route" : "alerts");
    showNext();
  } catch (err) {
    if (err.status === 401) { showLogin(t("badToken")); return; }
    if (retryable(err)) state.online = false; // the last data stays shown, marked with its time
    else toast(`${t("refused")} (${err.status}).`);
    render();
  } finally {
    $("refresh").removeAttribute("aria-busy");
  }
}

function optimistic(a) {
  const d = state.data;
  if (!d) return;
  if (a.kind === "clear") d.alerts = d.alerts.filter((x) => x.id !== a.alert);
  if (a.kind === "ack") d.alerts = d.alerts.map((x) => (x.id === a.alert ? Object.assign({}, x, { acknowledged: true,
    ack_by: d.me.role + ":" + d.me.name, ack_at: a.at }) : x));
  for (const r of d.routes || []) {
    for (const s of r.stops) {
      if (s.id !== a.bin) continue;
      if (a.kind === "emptied") { s.emptiedAt = a.at; s.problem = null; } // emptying clears its cant_empty
      if (a.kind === "cant") s.problem = a.body.reason;
    }
  }
  if (a.kind === "emptied") {
    d.alerts = d.alerts.filter((x) => !(x.device_id === a.bin && (typeOf(x.type) || {}).cleared_by_emptying));
  }
}

function act(action, undoable = false) {
  // late: tapped without signal, so sent later, when its toast must say which bin it was
  const a = Object.assign({ id: newId(), at: new Date().toISOString(), by: actor(me()), late: !state.online || !navigator.onLine }, action);
  const before = undoable ? JSON.stringify(state.data) : null;
  if (undoable) a.hold = Date.now() + UNDO_MS; // kept with the queue: a reload does not send it sooner
  state.queue.push(a);
  optimistic(a);
  keep();
  render();
  if (undoable) {
    toast(withBin(t("undoAsk"), [a.bin]), { label: t("undo"), ms: UNDO_MS, run: () => undo(a, before) });
  }
  flush();
}

function undo(a, before) { // only while the action is still held on the phone, i.e. never sent
  const at = state.queue.findIndex((q) => q.id === a.id);
  if (at < 0) return;
  state.queue.splice(at, 1);
  state.data = JSON.parse(before); // the view before the tap; actions queued after it are shown again
  for (const q of state.queue.slice(at)) optimistic(q);
  keep();
  render();
  toast(withBin(t("undone"), [a.bin]));
}

function withBin(text, bins) { // `text` with its {bin} as unbroken ids ("MKS-BIN-" / "0003" misleads)
  const [head, tail] = text.split("{bin}");
  return el("span", {}, head, ...bins.flatMap((b, i) => [i ? ", " : "", el("b", { class: "nobreak" }, b)]), tail);
}

function retryLater() {
  clearTimeout(state.retry);
  state.retry = setTimeout(() => { if (state.queue.length && state.token && !$("app").hidden) flush(); }, RETRY_MS);
}

const DONE_WORDS = { ack: "doneAck", clear: "doneClear", emptied: "doneEmptied", cant: "doneCant" };

/* Toasts after sending: an action sent at once says what was done ("Tercatat: sudah dikosongkan"; its bin was
 * named by the tap's own toast a moment before). Actions sent later (tapped without signal, or kept after a
 * failed try) or several at once say how many, and which bins: "Terkirim: 3 tindakan (MKS-BIN-0001, ...)". */
const SENT_BINS_SHOWN = 3;

async function flush() {
  if (state.flushing || !state.token) return;
  state.flushing = true;
  state.holding = false;
  renderNet();
  const sent = []; // applied by the server
  let done = 0, note = ""; // taken off the queue (applied or refused for good); the last failure's words
  try {
    while (state.queue.length) {
      const a = state.queue[0];
      const wait = (a.hold || 0) - Date.now();
      if (wait > 0) { // still undoable: sent when its time is up (the queue keeps its order)
        clearTimeout(state.held);
        state.held = setTimeout(flush, wait + 50);
        state.holding = true;
        break;
      }
      try {
        await api(a.path, { method: "POST", headers: { "Content-Type": "application/json", "Idempotency-Key": a.id },
          body: JSON.stringify(a.body || {}) });
        sent.push(a);
        state.sent = (state.sent || 0) + 1;
        if (a.alert && state.hist[a.alert]) refreshHistory(a.alert); // the card says done: so does its history
      } catch (err) {
        if (retryable(err) || err.status === 401) {
          for (const q of state.queue) q.late = true;
          keep();
        }
        if (retryable(err)) { // no signal, or a server / gateway fault: keep it queued, same Idempotency-Key
          state.online = false;
          note = t(err.status ? "serverError" : "netError");
          retryLater();
          break;
        }
        if (err.status === 401) { showLogin(t("badToken")); break; } // kept: see the login form's handler
        note = err.status === 409 || err.status === 404 ? t("already") : err.status === 403 ? t("forbidden")
          : `${t("refused")} (${t("k_" + a.kind)}, ${err.status}).`;
      }
      state.queue.shift(); // applied, or refused for good: either way not sent again
      done += 1;
      keep();
      render(); // its card's "not sent yet" goes now, not after the reload below
    }
  } finally {
    state.flushing = false;
    renderNet();
  }
  if (sent.length > 1 || sent.some((a) => a.late)) {
    const bins = [...new Set(sent.map((a) => a.bin || a.dev || "#" + a.alert))];
    const shown = bins.length > SENT_BINS_SHOWN ? [...bins.slice(0, SENT_BINS_SHOWN), "…"] : bins;
    toast(el("span", {}, withBin(tf(sent.length === 1 ? "sentOne" : "sentMany", { n: sent.length }), shown),
      note ? el("br") : null, note), null, 6000); // a list: read while walking
  } else if (note) toast(note);
  else if (sent.length) toast(t(DONE_WORDS[sent[0].kind]));
  if (done) load();
}

/* ---- dialogs ---------------------------------------------------------------------------------- */
/* An open dialog (which one, for what, the reason picked, the note typed) is kept in sessionStorage until it is
 * sent or cancelled: a reload in the alley (a thumb on reload, the browser dropping the tab from memory) opens
 * it again as it was. sessionStorage: this tab only, gone with it; the token's localStorage outlives it. */
const ASK_KEY = "lorong.ask";
const kept = () => { try { return JSON.parse(sessionStorage.getItem(ASK_KEY)); } catch (e) { return null; } };

function ask(what, title, text, reasons, okLabel, onOk) { // what: {kind: "clear" | "cant", id}
  const was = kept();
  const same = was && was.kind === what.kind && was.id === what.id ? was : { reason: "", note: "" };
  $("ask-title").textContent = title;
  $("ask-text").textContent = text;
  $("ask-note").value = same.note;
  $("ask-error").hidden = true;
  $("ask-ok").textContent = okLabel;
  $("ask-reasons").replaceChildren(...reasons.map(([value, label]) => el("label", { class: "reason" },
    el("input", { type: "radio", name: "reason", value, checked: value === same.reason }), " " + label)));
  state.asking = what;
  state.onAsk = onOk;
  keepAsk();
  if (!$("ask").open) $("ask").showModal();
}

function keepAsk() {
  const picked = $("ask-form").querySelector("input[name=reason]:checked");
  sessionStorage.setItem(ASK_KEY, JSON.stringify(Object.assign({ reason: picked ? picked.value : "", note: $("ask-note").value },
    state.asking)));
}

function reopenAsk() { // the kept dialog, once the data is there
  const was = kept();
  if (!was || !state.data || $("ask").open) return;
  const stop = was.kind === "cant" && (state.data.routes || []).flatMap((r) => r.stops).find((x) => x.id === was.id && !x.problem);
  const alert = was.kind === "clear" && state.data.alerts.find((x) => x.id === was.id);
  if (stop) askCant(stop); else if (alert) askClear(alert); else sessionStorage.removeItem(ASK_KEY); // done meanwhile
}

function askClear(a) {
  ask({ kind: "clear", id: a.id }, t("clearTitle"), `${words(a.type).title} · ${a.device_id}. ${t("clearText")}`,
    CLEAR_REASONS.map((k) => [k, t(k)]), t("clear").replace("…", ""), (reason, note) => {
      // "emptied" on a bin is a pickup: the same call as the route's Emptied (POST /bins/{id}/emptied), so the
      // stop is ticked at once and the collection recorded; it clears the bin's full / can't-empty alerts itself
      const bin = reason === "r_emptied" && me().may_collect && binsById().has(a.device_id);
      if (bin) {
        act({ kind: "emptied", bin: a.device_id, path: `/bins/${encodeURIComponent(a.device_id)}/emptied`,
          body: note ? { at: new Date().toISOString(), note } : { at: new Date().toISOString() } });
      }
      if (!bin || !(typeOf(a.type) || {}).cleared_by_emptying) {
        const text = CLEAR_CODES[reason] + (note ? ": " + note : "");
        act({ kind: "clear", alert: a.id, dev: a.device_id, path: `/alerts/${a.id}/clear`, body: { reason: text } });
      }
    });
}

function askCant(s) {
  const reasons = Object.entries(types().cant_empty_reasons).map(([k, w]) => [k, w[state.lang] || w.en]);
  ask({ kind: "cant", id: s.id }, t("cantTitle"), `${s.id} · ${place(s)}. ${t("cantText")}`, reasons, t("send"), (reason, note) => {
    act({ kind: "cant", bin: s.id, path: `/bins/${encodeURIComponent(s.id)}/cant-empty`,
      body: { reason, note, at: new Date().toISOString() } });
  });
}

/* ---- map -------------------------------------------------------------------------------------- */
function loadLeaflet() {
  if (window.L) return Promise.resolve();
  document.head.append(el("link", { rel: "stylesheet", href: "/web/vendor/leaflet/leaflet.css" }));
  return new Promise((resolve, reject) => {
    const script = el("script", { src: "/web/vendor/leaflet/leaflet.js" });
    script.onload = () => resolve();
    script.onerror = () => reject(new Error("leaflet"));
    document.head.append(script);
  });
}

function popup(b) {
  return el("div", {}, el("b", {}, b.id), el("br"), place(b) || b.kecamatan || "", el("br"),
    `${t("fill")} ${pct(b.fillingLevel)} · ${localTime(b.dateObserved)}`, links(b, b.id));
}

function drawMap() {
  const L = window.L;
  state.layer.clearLayers();
  const points = [];
  const bins = [...((state.data && state.data.bins) || [])].filter((b) => b.lat !== null && b.lon !== null)
    .sort((x, y) => (x.fillingLevel ?? -1) - (y.fillingLevel ?? -1)); // fullest drawn on top
  for (const b of bins) {
    L.circleMarker([b.lat, b.lon], { radius: 9, color: "#fff", weight: 2, fillColor: FILL_COLOR[fillClass(b.fillingLevel)],
      fillOpacity: 0.95, className: "bin-marker" }).bindPopup(() => popup(b)).addTo(state.layer);
    points.push([b.lat, b.lon]);
  }
  const route = me().may_collect ? currentRoute() : null;
  if (route) {
    const line = route.stops.filter((s) => s.lat !== null && s.lon !== null).map((s) => [s.lat, s.lon]);
    if (route.depot) { line.unshift(route.depot); line.push(route.depot); }
    L.polyline(line, { color: "#0b6e4f", weight: 4, opacity: 0.8, className: "route-line" }).addTo(state.layer);
    for (const s of route.stops) {
      if (s.lat === null || s.lon === null) continue;
      L.marker([s.lat, s.lon], { icon: L.divIcon({ className: "stop-pin" + (s.emptiedAt ? " done" : s.problem ? " failed" : ""),
        html: num(s.order), iconSize: [22, 22] }) }).addTo(state.layer);
    }
  }
  const centre = state.data && state.data.me.centre;
  if (points.length) state.map.fitBounds(points, { padding: [24, 24], maxZoom: 16 });
  else if (centre && !state.centred) { state.map.setView(centre, 12); state.centred = true; } // the token's city
}

async function showMap() {
  try { await loadLeaflet(); } catch (e) { toast(t("netError")); return; }
  if (!state.map) {
    const L = window.L;
    state.map = L.map("map").setView((state.data && state.data.me.centre) || MAKASSAR, 12);
    L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png",
      { maxZoom: 19, attribution: "© OpenStreetMap" }).addTo(state.map);
    state.layer = L.layerGroup().addTo(state.map);
  }
  state.map.invalidateSize();
  drawMap();
}

function showNext() {
  // once per opening of the page, on the route: scroll to the next stop when it is out of sight (mid-round a
  // 360x740 screen shows about one and a half stop cards, the finished ones first); never after a tap
  if (state.shownNext || state.tab !== "route" || $("app").hidden) return;
  const li = document.querySelector("#stops li.next-stop");
  if (!li) return;
  state.shownNext = true;
  const box = li.getBoundingClientRect();
  if (box.top < $("tabs").getBoundingClientRect().bottom || box.bottom > window.innerHeight) li.scrollIntoView({ block: "start" });
}

function selectTab(name) {
  state.tab = name;
  localStorage.setItem("lorong.tab", name);
  for (const tab of ["route", "alerts", "map"]) {
    $("tab-" + tab).setAttribute("aria-selected", String(name === tab));
    $("panel-" + tab).hidden = name !== tab;
  }
  if (name === "map") showMap();
  if (name === "route") showNext();
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  state.shownNext = false; // a new opening of the route (log-in or reload)
  for (const a of state.queue) a.late = true; // tapped before this opening: the toast that named its bin is gone
  if (state.data) { applyLanguage(); selectTab(state.tab || "alerts"); }
  load().then(flush);
  clearInterval(state.timer);
  state.timer = setInterval(() => (state.queue.length ? flush() : load()), 60000);
}

if ("scrollRestoration" in history) history.scrollRestoration = "manual"; // showNext() places a reloaded route

document.addEventListener("DOMContentLoaded", () => {
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => { /* http on a LAN */ });
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "id" ? "en" : "id";
    localStorage.setItem("lorong.lang", state.lang);
    applyLanguage();
  });
  $("logout").addEventListener("click", () => { // ask first, always: only the admin can give the token again,
    // and queued actions are lost with it
    const question = state.queue.length ? tf("lose", { n: state.queue.length }) : t("logoutAsk");
    if (!window.confirm(question)) return;
    for (const k of ["token", "data", "queue", "tab", "vehicle", "kec"]) localStorage.removeItem("lorong." + k);
    Object.assign(state, { token: "", data: null, queue: [], tab: "", kec: "" });
    showLogin("");
  });
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    try {
      const who = await api("/me");
      adoptQueue(who);
      localStorage.setItem("lorong.token", state.token);
      $("token").value = "";
      start();
    } catch (err) {
      showLogin(err.status === 401 ? t("badToken") : retryable(err) ? t("netLogin") : `${t("badToken")} (${err.status})`);
    }
  });
  $("refresh").addEventListener("click", () => {
    $("refresh").setAttribute("aria-busy", "true");
    (state.queue.length ? flush() : load()).finally(() => $("refresh").removeAttribute("aria-busy"));
  });
  $("kec").addEventListener("change", () => { state.kec = $("kec").value; localStorage.setItem("lorong.kec", state.kec); render(); });
  $("vehicle").addEventListener("change", () => { localStorage.setItem("lorong.vehicle", $("vehicle").value); render(); });
  for (const tab of ["route", "alerts", "map"]) $("tab-" + tab).addEventListener("click", () => selectTab(tab));
  $("ask-cancel").addEventListener("click", () => $("ask").close());
  $("ask").addEventListener("close", () => sessionStorage.removeItem(ASK_KEY)); // sent, cancelled or Esc
  $("ask-form").addEventListener("input", keepAsk);
  $("ask-form").addEventListener("submit", (ev) => {
    const picked = $("ask-form").querySelector("input[name=reason]:checked");
    if (!picked) { ev.preventDefault(); $("ask-error").hidden = false; return; }
    state.onAsk(picked.value, $("ask-note").value.trim());
  });
  // flush() reloads after sending; with no answer (signal not really back) it keeps the queue: do not load then
  window.addEventListener("online", () => { state.online = true; flush().then(() => state.queue.length || load()); });
  window.addEventListener("offline", () => { state.online = false; renderNet(); });
  applyLanguage();
  if (state.token) start(); else showLogin("");
});
