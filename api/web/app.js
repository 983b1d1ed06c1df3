/* Lorong crew page. Plain JS, no build step: active alerts by kecamatan (fullest bins first) with
 * acknowledge / clear, and a Leaflet map of bins coloured by fill level. Times in WITA
 * (Asia/Makassar). Bahasa Indonesia by default, English on request. The API token lives in
 * localStorage and goes out as "Authorization: Bearer <token>". */
"use strict";

const I18N = {
  id: {
    subtitle: "Petugas kebersihan", logout: "Ganti token", loginTitle: "Masukkan token API",
    loginHelp: "Minta token ke admin. Token disimpan di ponsel ini saja.", tokenLabel: "Token", save: "Simpan",
    activeAlerts: "peringatan aktif", fullBins: "tong penuh", refresh: "Muat ulang", updated: "Diperbarui",
    tabAlerts: "Peringatan", tabMap: "Peta", kecamatan: "Kecamatan", allKec: "Semua kecamatan",
    noAlerts: "Tidak ada peringatan aktif.", noData: "tanpa data", ack: "Konfirmasi", clear: "Selesai",
    ackedBy: "Dikonfirmasi oleh", since: "sejak", times: "kali", fill: "Isi",
    bin_full: "Tong penuh", pm25_high: "PM2.5 tinggi", offline: "Sensor tidak mengirim",
    critical: "Kritis", major: "Tinggi", minor: "Sedang", warning: "Info",
    badToken: "Token tidak diterima. Periksa lagi atau minta token baru ke admin.",
    forbidden: "Token ini tidak boleh melakukan itu (butuh peran crew).",
    netError: "Tidak bisa menghubungi server. Coba lagi.", doneAck: "Dikonfirmasi", doneClear: "Peringatan selesai",
    observed: "Terbaca", toFull: "penuh dalam", hours: "jam",
  },
  en: {
    subtitle: "Sanitation crew", logout: "Change token", loginTitle: "Enter your API token",
    loginHelp: "Ask an admin for a token. It is kept on this phone only.", tokenLabel: "Token", save: "Save",
    activeAlerts: "active alerts", fullBins: "full bins", refresh: "Refresh", updated: "Updated",
    tabAlerts: "Alerts", tabMap: "Map", kecamatan: "Kecamatan", allKec: "All kecamatan",
    noAlerts: "No active alerts.", noData: "no data", ack: "Acknowledge", clear: "Clear",
    ackedBy: "Acknowledged by", since: "since", times: "times", fill: "Fill",
    bin_full: "Bin full", pm25_high: "High PM2.5", offline: "Sensor silent",
    critical: "Critical", major: "Major", minor: "Minor", warning: "Warning",
    badToken: "Token not accepted. Check it, or ask an admin for a new one.",
    forbidden: "This token may not do that (it needs the crew role).",
    netError: "Cannot reach the server. Try again.", doneAck: "Acknowledged", doneClear: "Alert cleared",
    observed: "Read", toFull: "full in", hours: "h",
  },
};
const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const MAKASSAR = [-5.1477, 119.4327];
const state = { lang: localStorage.getItem("lorong.lang") || "id", token: localStorage.getItem("lorong.token") || "",
  alerts: [], bins: [], map: null, layer: null, timer: null };

const $ = (id) => document.getElementById(id);
const t = (key) => (I18N[state.lang] && I18N[state.lang][key]) || I18N.en[key] || key;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function wita(iso) {
  // Makassar local time; the date is shown only when it is not today in Makassar.
  if (!iso) return "–";
  const locale = state.lang === "id" ? "id-ID" : "en-GB";
  const when = new Date(iso);
  const day = (d) => d.toLocaleDateString("en-CA", { timeZone: "Asia/Makassar" });
  const opts = { timeZone: "Asia/Makassar", hour: "2-digit", minute: "2-digit", hour12: false };
  if (day(when) !== day(new Date())) Object.assign(opts, { day: "numeric", month: "short" });
  return new Intl.DateTimeFormat(locale, opts).format(when) + " WITA";
}

function fillColor(level) {
  if (level === null || level === undefined) return "#9aa0a6";
  if (level >= 0.95) return "#d93025";
  if (level >= 0.8) return "#e8710a";
  if (level >= 0.5) return "#e0a100";
  return "#2e9e4f";
}

function pct(level) { return level === null || level === undefined ? "–" : Math.round(level * 100) + "%"; }

function toast(msg) {
  const box = $("toast");
  box.textContent = msg;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 3000);
}

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers.Authorization = "Bearer " + state.token;
  const resp = await fetch(path, opts);
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new HttpError(resp.status, detail);
  }
  return resp.json();
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  $("lang").textContent = state.lang === "id" ? "EN" : "ID";
  $("refresh").setAttribute("aria-label", t("refresh"));
  $("refresh").title = t("refresh");
  document.title = "Lorong · " + t("subtitle");
  render();
}

function showLogin(message) {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  clearInterval(state.timer);
}

function binsById() {
  const out = new Map();
  for (const b of state.bins) out.set(b.id, b);
  return out;
}

function alertFill(a, bins) {
  const b = bins.get(a.device_id);
  if (b && b.fillingLevel !== null && b.fillingLevel !== undefined) return b.fillingLevel;
  return typeof a.details.fillingLevel === "number" ? a.details.fillingLevel : null;
}

function alertCard(a, bins) {
  const fill = alertFill(a, bins);
  const bin = bins.get(a.device_id);
  const card = el("article", { class: `alert ${a.severity}${a.acknowledged ? " acked" : ""}`, "data-alert-id": String(a.id) });
  card.append(el("div", { class: "row" }, el("span", { class: "id" }, a.device_id),
    el("span", { class: `sev ${a.severity}` }, t(a.severity))));
  if (fill !== null) {
    card.append(el("div", { class: "meter", "aria-label": `${t("fill")} ${pct(fill)}` },
      el("b", { style: `width:${Math.min(100, fill * 100)}%;background:${fillColor(fill)}` })));
  }
  const what = [t(a.type), fill !== null ? `${t("fill")} ${pct(fill)}` : null,
    a.type === "pm25_high" && a.details.pm25_1h_mean ? `${a.details.pm25_1h_mean} µg/m³` : null].filter(Boolean);
  card.append(el("div", { class: "meta" }, what.join(" · ")));
  const where = [bin && bin.street, `${t("since")} ${wita(a.started_at)}`, a.count > 1 ? `${a.count}× ` : null];
  card.append(el("div", { class: "meta" }, where.filter(Boolean).join(" · ")));
  if (a.acknowledged) {
    card.append(el("div", { class: "ackline" }, `✓ ${t("ackedBy")} ${a.ack_by || ""} · ${wita(a.ack_at)}`));
  }
  const ack = el("button", { type: "button", class: "btn ack" }, t("ack"));
  ack.disabled = a.acknowledged;
  ack.addEventListener("click", () => act(a.id, "ack", ack));
  const clear = el("button", { type: "button", class: "btn clear" }, t("clear"));
  clear.addEventListener("click", () => act(a.id, "clear", clear));
  card.append(el("div", { class: "actions" }, ack, clear));
  return card;
}

function render() {
  if ($("app").hidden) return;
  const bins = binsById();
  const kec = $("kec").value;
  const key = (a) => [alertFill(a, bins) ?? -1, -(SEVERITY_RANK[a.severity] ?? 9)];
  const byKey = (x, y) => { const kx = key(x), ky = key(y); return ky[0] - kx[0] || ky[1] - kx[1] || x.id - y.id; };
  const shown = state.alerts.filter((a) => !kec || a.kecamatan === kec).sort(byKey);
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
      el("h2", {}, el("span", {}, name), el("span", {}, String(items.length))));
    for (const a of items) section.append(alertCard(a, bins));
    box.append(section);
  }
  $("empty").hidden = shown.length > 0;
  $("n-alerts").textContent = String(state.alerts.length);
  $("n-full").textContent = String(state.bins.filter((b) => b.status === "full").length);
  const kecs = [...new Set(state.alerts.map((a) => a.kecamatan).filter(Boolean))].sort();
  const select = $("kec");
  select.replaceChildren(el("option", { value: "" }, t("allKec")), ...kecs.map((k) => el("option", { value: k }, k)));
  select.value = kecs.includes(kec) ? kec : "";
  if (state.map) drawMarkers();
}

async function load() {
  try {
    const [alerts, bins] = await Promise.all([api("/alerts?status=active&limit=500"), api("/bins?limit=2000")]);
    state.alerts = alerts;
    state.bins = bins;
    $("updated").textContent = wita(new Date().toISOString());
    $("updated").dataset.iso = new Date().toISOString();
    render();
  } catch (err) {
    if (err.status === 401) showLogin(t("badToken")); else toast(err.status ? err.message : t("netError"));
  }
}

async function act(id, action, button) {
  button.disabled = true;
  try {
    const updated = await api(`/alerts/${id}/${action}`, { method: "POST" });
    if (action === "clear") state.alerts = state.alerts.filter((a) => a.id !== id);
    else state.alerts = state.alerts.map((a) => (a.id === id ? updated : a));
    toast(t(action === "clear" ? "doneClear" : "doneAck"));
    render();
  } catch (err) {
    button.disabled = false;
    if (err.status === 401) showLogin(t("badToken"));
    else if (err.status === 403) toast(t("forbidden"));
    else if (err.status === 409) { toast(err.message); load(); }
    else toast(err.status ? err.message : t("netError"));
  }
}

function loadLeaflet() {
  if (window.L) return Promise.resolve();
  const css = el("link", { rel: "stylesheet", href: "/web/vendor/leaflet/leaflet.css" });
  document.head.append(css);
  return new Promise((resolve, reject) => {
    const script = el("script", { src: "/web/vendor/leaflet/leaflet.js" });
    script.onload = () => resolve();
    script.onerror = () => reject(new Error("leaflet"));
    document.head.append(script);
  });
}

function drawMarkers() {
  const L = window.L;
  state.layer.clearLayers();
  const points = [];
  const sorted = [...state.bins].filter((b) => b.lat !== null && b.lon !== null)
    .sort((x, y) => (x.fillingLevel ?? -1) - (y.fillingLevel ?? -1)); // fullest drawn on top
  for (const b of sorted) {
    const color = fillColor(b.fillingLevel);
    const marker = L.circleMarker([b.lat, b.lon], { radius: 9, color: "#fff", weight: 2, fillColor: color,
      fillOpacity: 0.95, className: "bin-marker" });
    marker.bindPopup(`<b>${b.id.replace(/[<>&]/g, "")}</b><br>${t("fill")} ${pct(b.fillingLevel)}<br>` +
      `${t("observed")} ${wita(b.dateObserved)}`);
    marker.addTo(state.layer);
    points.push([b.lat, b.lon]);
  }
  if (points.length) state.map.fitBounds(points, { padding: [24, 24], maxZoom: 16 });
}

async function showMap() {
  try { await loadLeaflet(); } catch (e) { toast(t("netError")); return; }
  if (!state.map) {
    const L = window.L;
    state.map = L.map("map", { preferCanvas: false }).setView(MAKASSAR, 12);
    L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png",
      { maxZoom: 19, attribution: "© OpenStreetMap" }).addTo(state.map);
    state.layer = L.layerGroup().addTo(state.map);
  }
  state.map.invalidateSize();
  drawMarkers();
}

function selectTab(name) {
  $("tab-alerts").setAttribute("aria-selected", String(name === "alerts"));
  $("tab-map").setAttribute("aria-selected", String(name === "map"));
  $("panel-alerts").hidden = name !== "alerts";
  $("panel-map").hidden = name !== "map";
  if (name === "map") showMap();
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  load();
  clearInterval(state.timer);
  state.timer = setInterval(load, 60000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "id" ? "en" : "id";
    localStorage.setItem("lorong.lang", state.lang);
    applyLanguage();
    if ($("updated").dataset.iso) $("updated").textContent = wita($("updated").dataset.iso);
  });
  $("logout").addEventListener("click", () => { localStorage.removeItem("lorong.token"); state.token = ""; showLogin(""); });
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    try {
      await api("/alerts?limit=1");
      localStorage.setItem("lorong.token", state.token);
      $("token").value = "";
      start();
    } catch (err) {
      showLogin(err.status === 401 ? t("badToken") : t("netError"));
    }
  });
  $("refresh").addEventListener("click", load);
  $("kec").addEventListener("change", render);
  $("tab-alerts").addEventListener("click", () => selectTab("alerts"));
  $("tab-map").addEventListener("click", () => selectTab("map"));
  applyLanguage();
  if (state.token) start(); else showLogin("");
});
