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

// Management forms and buttons: `data-api` (the method) and `data-url` call the admin JSON
// API with the session cookie. A form's fields become the JSON body (`data-list`: words
// split on spaces and commas; checkboxes: true or false, or with `data-many` the list of
// the values checked; `data-optional`: left out when
// empty; `data-query`: sent in the query string instead). `data-confirm` asks first. After
// success `data-then` reloads ("reload") or goes to an address ("{id}" from the answer);
// `data-show` shows a field of the answer (a link shown once) with a copy button. Errors
// show the API's message. Everything from the server is written with textContent.
(function () {
  "use strict";

  function copy(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = button.getAttribute("data-done") || label;
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (e) {}
      document.body.removeChild(area);
    }
  }

  function body(form) {
    var out = {};
    var query = [];
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name) return;
      if (form.getAttribute("data-query") === el.name) {
        if (el.type !== "radio" || el.checked) query.push(el.name + "=" + encodeURIComponent(el.value));
        return;
      }
      if (el.type === "checkbox" && el.hasAttribute("data-many")) {
        out[el.name] = out[el.name] || [];
        if (el.checked) out[el.name].push(el.value);
        return;
      }
      if (el.type === "checkbox") { out[el.name] = el.checked; return; }
      if (el.type === "radio") { if (el.checked) out[el.name] = el.value; return; }
      if (el.hasAttribute("data-optional") && el.value === "") return;
      out[el.name] = el.hasAttribute("data-list")
        ? el.value.split(/[\s,]+/).filter(function (w) { return w !== ""; })
        : el.value.trim();
    });
    return { json: out, query: query.join("&") };
  }

  function call(el, payload, query) {
    var error = el.querySelector && el.querySelector(".error");
    if (error) error.hidden = true;
    var url = el.getAttribute("data-url") + (query ? "?" + query : "");
    var init = { method: el.getAttribute("data-api"), credentials: "same-origin", headers: {} };
    if (payload !== null) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(url, init).then(function (r) {
      return r.text().then(function (text) {
        var answer = text ? JSON.parse(text) : {};
        if (!r.ok) throw new Error(answer.message || r.statusText);
        return answer;
      });
    }).then(function (answer) {
      var show = el.getAttribute("data-show");
      if (show) {
        var shown = el.querySelector(".shown");
        shown.querySelector(".value").textContent = answer[show];
        shown.hidden = false;
        return;
      }
      var then = el.getAttribute("data-then");
      if (then === "reload") location.reload();
      else if (then) location.href = then.replace("{id}", encodeURIComponent(answer.id || ""));
    }).catch(function (e) {
      if (error) { error.textContent = e.message; error.hidden = false; }
      else alert(e.message);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-api")) return;
    event.preventDefault();
    var confirmText = form.getAttribute("data-confirm");
    if (confirmText && !window.confirm(confirmText)) return;
    var b = body(form);
    var method = form.getAttribute("data-api");
    call(form, method === "DELETE" ? null : b.json, b.query);
  });

  document.addEventListener("click", function (event) {
    var el = event.target;
    if (el.tagName !== "BUTTON") return;
    if (el.hasAttribute("data-copy")) {
      copy(document.querySelector(el.getAttribute("data-copy")).textContent, el);
    } else if (el.classList.contains("copy")) {
      copy(el.parentNode.querySelector(".value").textContent, el);
    } else if (el.hasAttribute("data-api") && el.type === "button") {
      var confirmText = el.getAttribute("data-confirm");
      if (confirmText && !window.confirm(confirmText)) return;
      call(el, el.getAttribute("data-api") === "POST" ? {} : null, "");
    }
  });
})();
