// cortexflow dashboard: live fragments and API actions. Plain JS, no dependencies.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function flash(text, bad) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "bad" : "ok";
  }

  // -- live fragments: each [data-live] element re-fetches its URL every data-every ms ------
  function refresh(el) {
    if (el.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
      return Promise.resolve();
    }
    return fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        if (r.status === 404) { el.dataset.gone = "1"; return r.text(); }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null || html === undefined || html === el.dataset.last) return;
        el.dataset.last = html;
        // The server's fragment, parsed (never run: no script executes in a parsed document,
        // and the CSP allows none inline) and moved in node by node.
        var doc = new DOMParser().parseFromString(html, "text/html");
        var nodes;
        if (doc.querySelector("main")) {  // a full page (an error page): show its message as text
          var msg = doc.querySelector(".error");
          var p = document.createElement("p");
          p.className = "error";
          p.textContent = msg ? msg.textContent : "gone";
          nodes = [p];
        } else {
          nodes = Array.prototype.slice.call(doc.body.childNodes).map(function (n) {
            return document.adoptNode(n);
          });
        }
        el.replaceChildren.apply(el, nodes);
      })
      .catch(function () { /* the server restarts: try again next tick */ });
  }

  function refreshAll() {
    document.querySelectorAll("[data-live]").forEach(refresh);
  }

  document.querySelectorAll("[data-live]").forEach(function (el) {
    var every = parseInt(el.dataset.every || "2000", 10);
    setInterval(function () { if (!document.hidden) refresh(el); }, every);
  });

  // -- actions: buttons and forms with data-api call the JSON API ------------------------------
  function call(el, body) {
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    var headers = { "X-CSRF-Token": csrf, "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    fetch(el.dataset.api, {
      method: el.dataset.method || "POST",
      credentials: "same-origin",
      headers: headers,
      body: body,
    })
      .then(function (r) {
        return r.text().then(function (text) {
          var data;
          try { data = JSON.parse(text); } catch (e) { data = { error: text }; }
          if (!r.ok) {
            var extra = (data.violations || []).map(function (v) {
              return (v.pointer || "/") + ": " + v.message;
            }).join("; ");
            flash("Refused (" + r.status + "): " + (data.error || "") + (extra ? " — " + extra : ""), true);
            return;
          }
          flash("Done: " + JSON.stringify(data).slice(0, 300), false);
          if (el.dataset.then) { window.location.href = el.dataset.then; return; }
          refreshAll();
        });
      })
      .catch(function (e) { flash("Request failed: " + e, true); });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button[data-api]");
    if (!btn) return;
    ev.preventDefault();
    call(btn);
  });

  document.addEventListener("submit", function (ev) {
    var form = ev.target.closest("form[data-api]");
    if (!form) return;
    ev.preventDefault();
    var body;
    if (form.dataset.body === "json") {
      body = form.querySelector("textarea[name=body]").value;
      try { JSON.parse(body); } catch (e) { flash("Not JSON: " + e.message, true); return; }
    } else {
      var obj = {};
      new FormData(form).forEach(function (value, key) {
        var input = form.querySelector("[name='" + key + "']");
        obj[key] = input && input.type === "number" ? Number(value) : value;
      });
      body = JSON.stringify(obj);
    }
    call(form, body);
  });
})();
