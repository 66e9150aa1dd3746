{% load static %}// Chhavi service worker: caches the app shell, shows the offline page when the network drops.
const CACHE = "chhavi-{{ LANGUAGE_CODE }}-v1";
const OFFLINE = "{% url 'offline' %}";
const SHELL = [OFFLINE, "{% static 'css/app.css' %}", "{% static 'js/app.js' %}", "{% static 'icons/icon.svg' %}"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  if (request.mode === "navigate") {
    // Pages are always fresh from the network; the offline page stands in when it is gone.
    event.respondWith(fetch(request).catch(() => caches.match(OFFLINE)));
    return;
  }
  if (new URL(request.url).pathname.startsWith("/static/")) {
    // Hashed file names never change content, so the cache can answer first.
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  }
});
