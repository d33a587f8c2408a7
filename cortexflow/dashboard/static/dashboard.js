// cortexflow dashboard: live fragments and API actions. Plain JS, no dependencies.
//
// A [data-live] element is a fragment of the page the script re-fetches. With data-stream (an
// SSE URL: /api/events?queues=...) it follows that stream: an event of its queue(s) (of its job,
// with data-job) re-fetches it at once, coalesced (one fetch in flight, one pending, at most
// one start per GAP ms); it is still re-fetched every SLOW ms for what no event tells (workers'
// heartbeats, delayed jobs falling due, "2m ago"). While the stream is down (an error, or 503
// at the --max-streams cap) it is polled every data-every ms as before, and the stream is
// tried again after 1 s, 2 s, 4 s ... up to 15 s. A hidden tab holds no stream and polls
// nothing. document.body.dataset.liveMode says which: "stream" or "poll" (streamErrors: how
// many times a stream failed).
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function flash(text, bad) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "bad" : "ok";
  }

  // -- live fragments: fetch a [data-live] element's URL, put the fragment in ---------------
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

  // -- coalesced re-fetch: at most one fetch in flight and one pending ------------------------
  var GAP = 100;
  var SLOW = 15000;

  function kick(el) {
    var st = el._live || (el._live = { busy: false, pending: false, timer: null, started: 0 });
    if (st.busy || st.timer) { st.pending = st.busy; return; }
    var wait = st.started + GAP - Date.now();
    if (wait > 0) { st.timer = setTimeout(function () { st.timer = null; kick(el); }, wait); return; }
    st.busy = true;
    st.started = Date.now();
    refresh(el).then(function () {
      st.busy = false;
      if (st.pending) { st.pending = false; kick(el); }
    });
  }

  function refreshAll() {
    document.querySelectorAll("[data-live]").forEach(kick);
  }

  // -- the event streams, one per distinct data-stream URL -------------------------------------
  var EVENTS = ["added", "active", "progress", "completed", "failed", "retried", "removed",
    "promoted", "stalled", "cleaned", "drained", "paused", "resumed", "group-paused",
    "group-resumed"];
  var streams = {};
  var streamErrors = 0;

  function showMode() {
    var urls = Object.keys(streams);
    var up = urls.length > 0 && urls.every(function (u) { return streams[u].up; });
    document.body.dataset.liveMode = up ? "stream" : "poll";
  }

  function follow(url, els) {
    var s = { url: url, els: els, source: null, up: false, retry: null, backoff: 1000 };
    streams[url] = s;
    s.onEvent = function (ev) {
      var job = null;
      try { job = JSON.parse(ev.data).jobId; } catch (e) { /* no data: refresh anyway */ }
      s.els.forEach(function (el) {
        if (!el.dataset.job || !job || job === el.dataset.job) kick(el);
      });
    };
    return s;
  }

  function open(s) {
    if (s.source || s.retry || document.hidden) return;
    var source = new EventSource(s.url);
    s.source = source;
    source.onopen = function () {
      s.up = true;
      s.backoff = 1000;
      showMode();
      s.els.forEach(kick);  // what changed while the stream was down
    };
    source.onerror = function () {  // 503 at the cap, a network error, the server restarting
      document.body.dataset.streamErrors = String(++streamErrors);
      close(s);
      s.retry = setTimeout(function () { s.retry = null; open(s); }, s.backoff);
      s.backoff = Math.min(s.backoff * 2, 15000);
    };
    EVENTS.forEach(function (name) { source.addEventListener(name, s.onEvent); });
  }

  function close(s) {
    if (s.source) { s.source.close(); s.source = null; }
    s.up = false;
    showMode();
  }

  function streaming(el) {
    var s = el.dataset.stream && streams[el.dataset.stream];
    return !!(s && s.up);
  }

  document.querySelectorAll("[data-live]").forEach(function (el) {
    var url = el.dataset.stream;
    if (url) (streams[url] || follow(url, [])).els.push(el);
    var every = parseInt(el.dataset.every || "2000", 10);
    setInterval(function () {
      if (document.hidden) return;
      var st = el._live;
      if (streaming(el) && st && Date.now() - st.started < SLOW) return;
      kick(el);
    }, every);
  });
  Object.keys(streams).forEach(function (url) { open(streams[url]); });
  showMode();

  document.addEventListener("visibilitychange", function () {
    Object.keys(streams).forEach(function (url) {
      var s = streams[url];
      if (document.hidden) {
        if (s.retry) { clearTimeout(s.retry); s.retry = null; }
        close(s);
      } else {
        s.backoff = 1000;
        open(s);
      }
    });
    if (!document.hidden) refreshAll();
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
    call(btn, btn.dataset.json);  // data-json: the request's JSON body, if any
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
