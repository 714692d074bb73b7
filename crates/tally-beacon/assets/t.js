/* Tally tracker. Embed:
   <script defer src="https://STATS-HOST/t.js" data-site="SITE_ID"></script>
   No cookies, no localStorage: a random tab id lives in sessionStorage only. */
(function () {
  var d = document, w = window, n = navigator, s = d.currentScript;
  if (!s || !s.getAttribute("data-site")) return;
  var site = s.getAttribute("data-site"), explicit = s.getAttribute("data-page");
  var base = (s.getAttribute("data-endpoint") || new URL(s.src, location.href).origin).replace(/\/+$/, "");
  var sid = "", ref = d.referrer, path = location.pathname;
  try {
    sid = sessionStorage.getItem("tally_sid");
    if (!sid) sessionStorage.setItem("tally_sid", sid = Math.random().toString(36).slice(2, 12) + Date.now().toString(36));
  } catch (e) {}
  function send(t, unload) {
    var body = JSON.stringify({ t: t, site: site, url: location.href, page: explicit || undefined,
      title: d.title, ref: t == "pageview" ? ref : undefined, sid: sid, w: w.innerWidth, lang: n.language });
    if (unload && n.sendBeacon && n.sendBeacon(base + "/collect", body)) return Promise.resolve();
    return fetch(base + "/collect", { method: "POST", body: body, keepalive: true,
      headers: { "Content-Type": "text/plain" } }).catch(function () {});
  }
  function fmt(v) {
    try { return new Intl.NumberFormat(d.documentElement.lang || undefined).format(v); } catch (e) { return "" + v; }
  }
  var fields = { "page-views": "page_views", "online": "online", "page-online": "page_online",
    "total-visits": "total_visits", "total-views": "total_views" };
  function fill() {
    var els = d.querySelectorAll("[data-tally]"), others = [], i;
    if (!els.length) return;
    for (i = 0; i < els.length; i++) {
      var other = els[i].getAttribute("data-tally-page");
      if (other && others.indexOf(other) < 0) others.push(other);
    }
    var api = base + "/api/v1/sites/" + encodeURIComponent(site);
    // The server makes the page key from the address, exactly as it does for the view.
    var q = explicit ? "page=" + encodeURIComponent(explicit) : "url=" + encodeURIComponent(location.origin + location.pathname);
    fetch(api + "/counters?" + q).then(function (r) { return r.json(); }).then(function (c) {
      for (i = 0; i < els.length; i++) {
        var f = fields[els[i].getAttribute("data-tally")];
        if (f && !els[i].getAttribute("data-tally-page") && c[f] != null) els[i].textContent = fmt(c[f]);
      }
    }).catch(function () {});
    if (others.length) {
      fetch(api + "/views?" + others.map(function (p) { return "page=" + encodeURIComponent(p); }).join("&"))
        .then(function (r) { return r.json(); }).then(function (v) {
          for (i = 0; i < els.length; i++) {
            var p = els[i].getAttribute("data-tally-page");
            if (p && v.views && v.views[p] != null) els[i].textContent = fmt(v.views[p]);
          }
        }).catch(function () {});
    }
  }
  function view() { send("pageview").then(fill); }
  function route() {
    if (location.pathname == path) return;
    ref = location.origin + path;
    path = location.pathname;
    view();
  }
  ["pushState", "replaceState"].forEach(function (m) {
    var orig = history[m];
    history[m] = function () { var r = orig.apply(this, arguments); route(); return r; };
  });
  w.addEventListener("popstate", route);
  w.addEventListener("pagehide", function () { send("leave", true); });
  setInterval(function () { if (d.visibilityState == "visible") send("ping"); }, __HEARTBEAT_MS__);
  if (d.visibilityState == "prerender") {
    d.addEventListener("visibilitychange", function once() {
      if (d.visibilityState == "visible") { d.removeEventListener("visibilitychange", once); view(); }
    });
  } else view();
})();
