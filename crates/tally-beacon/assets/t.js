/* Tally tracker. Embed:
   <script defer src="https://STATS-HOST/t.js" data-site="SITE_ID"></script>
   No cookies, no localStorage: a random tab id lives in sessionStorage only.
   Clicks on links to files (data-downloads, default below) send "download", on links to
   other hosts "outbound"; window.tally("name", {props}) and data-tally-event="name" (with
   data-tally-prop-KEY="value") send custom events; calls made before this script loaded
   (window.tally.q) are sent after the page view. */
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
  function body(t) {
    return { t: t, site: site, url: location.href, page: explicit || undefined,
      title: d.title, ref: t == "pageview" ? ref : undefined, sid: sid, w: w.innerWidth, lang: n.language };
  }
  function post(b, unload) {
    b = JSON.stringify(b);
    if (unload && n.sendBeacon && n.sendBeacon(base + "/collect", b)) return Promise.resolve();
    return fetch(base + "/collect", { method: "POST", body: b, keepalive: true,
      headers: { "Content-Type": "text/plain" } }).catch(function () {});
  }
  function send(t, unload) { return post(body(t), unload); }
  // Sent with sendBeacon: a click that leaves the page does not lose it.
  function track(name, props, target) {
    var b = body("event");
    b.name = name; b.props = props; b.target = target;
    post(b, 1);
  }
  function abs(u) { return new URL(u, location.href).href.split("#")[0]; }
  var exts = (s.getAttribute("data-downloads") || "pdf,doc,docx,xls,xlsx,ppt,pptx,odt,zip,rar").toLowerCase().split(/[\s,]+/);
  d.addEventListener("click", function (e) {
    var el = e.target, a, name, p, i, at, m;
    for (; el && el.getAttribute; el = el.parentNode) {
      if (!name && (name = el.getAttribute("data-tally-event"))) {
        p = {};
        for (i = 0; i < el.attributes.length; i++) {
          at = el.attributes[i];
          if (!at.name.indexOf("data-tally-prop-")) p[at.name.slice(16)] = at.value;
        }
        track(name, p);
      }
      if (!a && el.tagName == "A" && el.href) a = el;
    }
    if (!a || name || !/^https?:/.test(a.href)) return;
    m = /\.([^./]+)$/.exec(new URL(a.href).pathname);
    if (m && exts.indexOf(m[1].toLowerCase()) >= 0) track("download", undefined, abs(a.href));
    else if (a.host != location.host) track("outbound", undefined, abs(a.href));
  }, true);
  function fmt(v) {
    try { return new Intl.NumberFormat(d.documentElement.lang || undefined).format(v); } catch (e) { return "" + v; }
  }
  var fields = { "page-views": "page_views", "online": "online", "page-online": "page_online",
    "total-visits": "total_visits", "total-views": "total_views" };
  // Fills the counters; `fresh` asks past the browser's cache (the public counters may be
  // cached for 5 s).
  function fill(fresh) {
    var els = d.querySelectorAll("[data-tally]"), others = [], files = [], i;
    if (!els.length) return;
    for (i = 0; i < els.length; i++) {
      var other = els[i].getAttribute("data-tally-page"), file = els[i].getAttribute("data-tally-target");
      if (other && others.indexOf(other) < 0) others.push(other);
      if (file) files.push("target=" + encodeURIComponent(abs(file)));
    }
    var api = base + "/api/v1/sites/" + encodeURIComponent(site);
    if (files.length) {
      fetch(api + "/event-counters?name=download&" + files.join("&"))
        .then(function (r) { return r.json(); }).then(function (v) {
          for (i = 0; i < els.length; i++) {
            var f = els[i].getAttribute("data-tally-target");
            if (f && v.counts && v.counts[abs(f)] != null) els[i].textContent = fmt(v.counts[abs(f)]);
          }
        }).catch(function () {});
    }
    // The server makes the page key from the address, exactly as it does for the view.
    var q = explicit ? "page=" + encodeURIComponent(explicit) : "url=" + encodeURIComponent(location.origin + location.pathname);
    fetch(api + "/counters?" + q, { cache: fresh ? "no-cache" : "default" }).then(function (r) { return r.json(); }).then(function (c) {
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
  // The views include this one at once; who is online and the visits follow within 2 s,
  // so the counters are filled again then.
  function view() { return send("pageview").then(function () { fill(); setTimeout(fill, 2e3, 1); }); }
  // Calls queued before the script loaded, sent once the page view (which starts the visit) is.
  var queued = w.tally && w.tally.q || [];
  w.tally = function (name, props) { track(name, props); };
  function drain() { while (queued.length) w.tally.apply(w, queued.shift()); }
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
      if (d.visibilityState == "visible") { d.removeEventListener("visibilitychange", once); view().then(drain); }
    });
  } else view().then(drain);
})();
