// Live figures on the site page: "online now" and the pages being read, refreshed without
// reloading. Everything from the server is written with textContent (never as HTML).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var site = live.getAttribute("data-site");
  var lang = live.getAttribute("data-lang") || "en";
  var every = parseInt(live.getAttribute("data-poll"), 10) || 5000;
  var fmt = new Intl.NumberFormat(lang === "vi" ? "vi-VN" : "en-US");
  var online = document.getElementById("online");
  var list = document.getElementById("reading");

  function render(pages) {
    var nobody = document.getElementById("nobody");
    while (list.firstChild) list.removeChild(list.firstChild);
    pages.forEach(function (p) {
      var li = document.createElement("li");
      var name = document.createElement("span");
      name.className = "name";
      name.textContent = p.other ? list.getAttribute("data-other") : (p.title || p.page);
      var page = document.createElement("small");
      page.textContent = p.page;
      var n = document.createElement("strong");
      n.textContent = fmt.format(p.online);
      li.appendChild(name);
      li.appendChild(page);
      li.appendChild(n);
      list.appendChild(li);
    });
    if (pages.length === 0 && !nobody) {
      nobody = document.createElement("p");
      nobody.id = "nobody";
      nobody.className = "empty";
      nobody.textContent = list.getAttribute("data-empty");
      list.parentNode.appendChild(nobody);
    } else if (pages.length > 0 && nobody) {
      nobody.parentNode.removeChild(nobody);
    }
  }

  function refresh() {
    fetch("/api/v1/sites/" + encodeURIComponent(site) + "/stats/realtime", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (rt) {
        if (!rt) return;
        online.textContent = fmt.format(rt.online);
        render(rt.pages.slice(0, 10));
      })
      .catch(function () {});
  }
  setInterval(refresh, every);
})();
