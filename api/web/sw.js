/* Lorong service worker: keeps the crew page's own files so it opens in an alley without signal.
 * Network first (a new version arrives as soon as there is signal), the cached copy when the network
 * fails. API answers are not cached here: the page keeps the last ones itself (localStorage) and
 * queues actions taken offline. */
"use strict";

const CACHE = "lorong-page-v1";
const SHELL = ["/", "/web/app.js", "/web/app.css", "/web/manifest.webmanifest", "/web/icon.svg",
  "/web/vendor/leaflet/leaflet.js", "/web/vendor/leaflet/leaflet.css"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  const page = req.mode === "navigate";
  if (!page && !url.pathname.startsWith("/web/")) return; // API calls: the page handles them
  const key = page ? "/" : url.pathname;
  event.respondWith(fetch(req).then((resp) => {
    if (resp.ok) {
      const copy = resp.clone();
      caches.open(CACHE).then((c) => c.put(key, copy));
    }
    return resp;
  }).catch(() => caches.match(key).then((hit) => hit || Response.error())));
});
