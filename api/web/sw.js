/* Lorong service worker: keeps the crew page's own files so it opens in an alley without signal.
 * Network first (a new version arrives as soon as there is signal), the cached copy when the network
 * fails, answers with an error, or has not answered within NET_WAIT_MS: a weak signal that connects
 * but never answers must not leave a white page. A late answer still refreshes the cache. API answers are not cached here: the page keeps the last ones itself (localStorage) and
 * queues actions taken offline. */
"use strict";

const CACHE = "lorong-page-v2";
const NET_WAIT_MS = 2000;
const SLOW_FOR_MS = 10000;
/* After a request has waited NET_WAIT_MS in vain, the next ones for SLOW_FOR_MS take the cached copy at
 * once (the network still refreshes the cache behind): the page's files load in one wait, not one each. */
let slowSince = -Infinity;
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
  const net = fetch(req).then((resp) => {
    if (resp.ok) {
      const copy = resp.clone();
      caches.open(CACHE).then((c) => c.put(key, copy));
    }
    return resp;
  });
  net.catch(() => { /* answered from the cache below */ });
  event.respondWith(caches.match(key).then((hit) => {
    if (!hit) return net; // nothing kept yet: wait for the network
    const wait = Date.now() - slowSince < SLOW_FOR_MS ? 0 : NET_WAIT_MS;
    const late = new Promise((resolve) => { setTimeout(() => resolve(null), wait); });
    return Promise.race([net, late]).then((resp) => {
      if (resp === null) slowSince = Date.now();
      return resp && resp.ok ? resp : hit;
    }, () => hit);
  }));
});
