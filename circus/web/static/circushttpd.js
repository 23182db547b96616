// circushttpd: live updates (WebSocket) and actions with progress. The pages work without it.
(function () {
  "use strict";
  var KEEP = 60, W = 120, H = 24, LATE_EVENTS = 3000;
  var meta = function (name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : null;
  };
  var node = meta("circus-node"), watcher = meta("circus-watcher"), live = meta("circus-live");
  var series = {};      // "metric/watcher" -> [values]
  var updates = {};     // "metric/watcher" -> live updates applied (survives a table refresh)
  var running = null;   // the action in progress: {watcher, lines, box}

  function q(sel, root) { return (root || document).querySelector(sel); }
  function qa(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function attr(v) { return String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"'); }
  function fmt(v) { return typeof v === "number" ? v.toFixed(1) : "–"; }
  function age(s) {
    if (typeof s !== "number" || isNaN(s)) { return "-"; }
    s = Math.floor(s);
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m" + p(s % 60) + "s"; }
    if (s < 86400) { return Math.floor(s / 3600) + "h" + p(Math.floor(s % 3600 / 60)) + "m"; }
    return Math.floor(s / 86400) + "d" + p(Math.floor(s % 86400 / 3600)) + "h";
  }

  // -- sparklines ----------------------------------------------------------------------------
  function key(svg) { return svg.getAttribute("data-metric") + "/" + svg.getAttribute("data-watcher"); }

  function adopt(svg) {
    var k = key(svg);
    if (!series[k]) {
      var raw = (svg.getAttribute("data-values") || "").trim();
      series[k] = raw ? raw.split(/\s+/).map(Number) : [];
    }
    if (updates[k]) { svg.setAttribute("data-updates", String(updates[k])); }
    draw(svg, series[k]);
  }

  function draw(svg, values) {
    var line = q("polyline", svg);
    if (!line || !values.length) { return; }
    var metric = svg.getAttribute("data-metric");
    var top = Math.max.apply(null, values.concat([metric === "cpu" ? 1 : 0.1]));
    var scale = svg.parentNode ? q(".spark-scale", svg.parentNode) : null;
    if (scale) { scale.textContent = top.toFixed(1) + "%"; }
    var step = W / (KEEP - 1), start = W - step * (values.length - 1);
    line.setAttribute("points", values.map(function (v, i) {
      return (start + i * step).toFixed(1) + "," + (H - 1 - (H - 2) * v / top).toFixed(1);
    }).join(" "));
  }

  function push(metric, name, value) {
    var k = metric + "/" + name;
    var values = series[k] || (series[k] = []);
    values.push(value);
    if (values.length > KEEP) { values.splice(0, values.length - KEEP); }
    updates[k] = (updates[k] || 0) + 1;
    qa('svg.sparkline[data-metric="' + metric + '"][data-watcher="' + attr(name) + '"]').forEach(function (svg) {
      draw(svg, values);
      svg.setAttribute("data-updates", String(updates[k]));
    });
  }

  // -- messages ------------------------------------------------------------------------------
  function onStats(m) {
    if (m.pid === undefined) {
      push("cpu", m.watcher, m.cpu);
      push("mem", m.watcher, m.mem);
      var row = q('#watchers tr[data-watcher="' + attr(m.watcher) + '"]');
      if (row) {
        var c = q("td.cpu", row), me = q("td.mem", row);
        if (c) { c.textContent = fmt(m.cpu); }
        if (me) { me.textContent = fmt(m.mem); }
      }
      if (watcher === m.watcher) {
        var dc = q(".titlebar dd.cpu"), dm = q(".titlebar dd.mem");
        if (dc) { dc.textContent = fmt(m.cpu); }
        if (dm) { dm.textContent = fmt(m.mem); }
      }
      return;
    }
    var prow = q('#processes tr[data-pid="' + m.pid + '"]');
    if (!prow) { return; }
    q("td.cpu", prow).textContent = fmt(m.cpu);
    q("td.mem", prow).textContent = fmt(m.mem);
    if (typeof m.age === "number") {
      var a = q("td.age", prow);
      a.setAttribute("data-age", String(m.age));
      a.textContent = age(m.age);
    }
  }

  function onSocket(m) {
    var row = q('#sockets tr[data-socket="' + attr(m.name) + '"]');
    if (!row) { return; }
    ["queue", "connections", "accepted"].forEach(function (f) {
      var td = q("td." + f, row);
      if (td && m[f] !== null && m[f] !== undefined) { td.textContent = String(m[f]); }
    });
  }

  function onNode(m) {
    var load = q("#node-load");
    if (load && m.load) { load.textContent = m.load.join(" "); }
  }

  function topicName(name) { return String(name).toLowerCase().replace(/ /g, "_"); }

  function onOutput(m) {
    var out = q("#output");
    if (!out || m.watcher !== watcher) { return; }
    var empty = q("#output-empty");
    if (empty) { empty.remove(); }
    var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    var span = document.createElement("span");
    span.className = m.stream || "";
    var t = document.createElement("span");
    t.className = "muted";
    t.textContent = new Date((m.time || Date.now() / 1000) * 1000).toTimeString().slice(0, 8) + " " + m.pid;
    span.appendChild(t);
    span.appendChild(document.createTextNode(" " + m.line + "\n"));
    out.appendChild(span);
    while (out.children.length > 200) { out.removeChild(out.firstChild); }
    out.setAttribute("data-lines", String((parseInt(out.getAttribute("data-lines") || "0", 10)) + 1));
    if (atEnd) { out.scrollTop = out.scrollHeight; }
  }

  var refreshTimer = null;
  function onEvent(m) {
    if (watcher && m.watcher === topicName(watcher)) {
      var list = q("#events");
      if (list) {
        var li = document.createElement("li");
        li.setAttribute("data-event", m.event);
        var t = document.createElement("span");
        t.className = "muted";
        t.textContent = new Date((m.time || Date.now() / 1000) * 1000).toTimeString().slice(0, 8) + " ";
        li.appendChild(t);
        li.appendChild(document.createTextNode(m.text));
        list.insertBefore(li, list.firstChild);
        while (list.children.length > 50) { list.removeChild(list.lastChild); }
        var note = q("#events-note");
        if (note) { note.remove(); }
      }
    }
    if (running && (!running.watcher || topicName(running.watcher) === m.watcher)) { progressLine(m.text); }
    var mine = !watcher || m.watcher === topicName(watcher);     // a watcher page: its own
    if (mine && ["spawn", "reap", "state", "ready", "add", "remove", "stop", "start", "backoff",
                 "respawn", "exhausted", "updated", "progress", "adopt"].indexOf(m.event) >= 0) {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, 400);
    }
  }

  function connect(delay) {
    if (!live || !window.WebSocket) { return; }
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?node=" +
      encodeURIComponent(node) + (watcher ? "&watcher=" + encodeURIComponent(watcher) : "");
    var ws = new WebSocket(url);
    ws.onopen = function () { delay = 1000; document.body.setAttribute("data-live", "open"); };
    ws.onmessage = function (e) {
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (m.type === "stats") { onStats(m); }
      else if (m.type === "event") { onEvent(m); }
      else if (m.type === "socket") { onSocket(m); }
      else if (m.type === "node") { onNode(m); }
      else if (m.type === "output") { onOutput(m); }
    };
    ws.onclose = function () {
      document.body.setAttribute("data-live", "closed");
      setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay);
    };
  }

  // -- refreshing the tables without reloading the page ----------------------------------------
  function refresh() {
    return fetch(location.href, {credentials: "same-origin", headers: {Accept: "text/html"}})
      .then(function (r) {
        if (r.redirected && r.url.indexOf("/login") >= 0) { location.reload(); }
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        // every part marked data-refresh (tables, their counts, the title, the trouble box,
        // the admin forms) is replaced by its fresh copy; the output and progress stay
        qa("[data-refresh][id]", doc).forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          // nor is a part replaced while the operator is in it (typing in the add form)
          if (!old || old.contains(document.activeElement)) { return; }
          var copy = document.importNode(fresh, true);
          // what the operator is typing stays (the add form, after a failed add)
          qa("input[name]:not([type=hidden])", old).forEach(function (input) {
            var twin = q('input[name="' + attr(input.name) + '"]:not([type=hidden])', copy);
            if (twin) { twin.value = input.value; }
          });
          old.replaceWith(copy);
        });
        if (running && !running.done) { qa("form.action button, #add-watcher button").forEach(function (b) { b.disabled = true; }); }
        qa("svg.sparkline").forEach(adopt);
      }).catch(function () { /* the next event or action tries again */ });
  }

  // -- actions with progress --------------------------------------------------------------------
  function progressLine(text) {
    if (!running) { return; }
    var li = document.createElement("li");
    li.textContent = text;
    running.lines.appendChild(li);
  }

  // the banner of an action, from the server's reading of the node's reply (banners.py)
  function showResult(box, head, what, res) {
    var b = res.body || {}, banner = b.banner;
    if (!banner) {        // refused before reaching the node (403, 400) or not JSON
      banner = {kind: "error", title: what + ": failed", reason: b.reason || b.error || ("HTTP " + res.status),
                lines: [], summary: ""};
    }
    var kind = banner.kind === "ok" || banner.kind === "warning" ? banner.kind : "error";
    box.className = "progress " + (kind === "ok" ? "done" : kind === "warning" ? "warned" : "failed");
    box.setAttribute("data-result", kind);
    if (banner.code) { box.setAttribute("data-code", banner.code); }
    head.className = "banner-title";
    head.textContent = banner.title + (banner.summary ? ": " + banner.summary : "");
    var after = head.nextSibling;
    if (banner.reason) {
      var reason = document.createElement("div");
      reason.className = "banner-reason";
      reason.textContent = banner.reason;
      box.insertBefore(reason, after);
    }
    if (banner.lines && banner.lines.length) {
      var pre = document.createElement("pre");
      pre.className = "banner-lines";
      pre.textContent = banner.lines.join("\n");
      box.insertBefore(pre, after);
    }
  }

  function submit(form, e) {
    var box = q("#progress");
    if (!box || !window.fetch) { return; }   // no script support: the normal post and redirect
    e.preventDefault();
    var action = form.getAttribute("data-action") || "add";
    var name = form.getAttribute("data-watcher") || (form.elements.name ? form.elements.name.value : "");
    var pid = form.getAttribute("data-pid");
    var what = action + (name ? " " + name : "") + (pid ? " process " + pid : "");
    var flash = q("#flash");
    if (flash) { flash.remove(); }
    box.hidden = false;
    box.className = "progress";
    box.removeAttribute("data-result");
    box.removeAttribute("data-code");
    box.textContent = "";
    var head = document.createElement("div");
    box.appendChild(head);
    var lines = document.createElement("ul");
    box.appendChild(lines);
    running = {watcher: name || null, lines: lines};
    var started = Date.now();
    var tick = function () { head.textContent = what + ": running… " + ((Date.now() - started) / 1000).toFixed(1) + " s"; };
    tick();
    var timer = setInterval(tick, 100);
    var buttons = qa("form.action button, #add-watcher button").filter(function (b) { return !b.disabled; });
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.getAttribute("action"), {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {Accept: "application/json"}})
      .then(function (r) {
        return r.json().then(function (j) { return {status: r.status, body: j}; },
                             function () { return {status: r.status, body: {}}; });
      })
      .then(function (res) { clearInterval(timer); showResult(box, head, what, res); })
      .catch(function (err) {
        clearInterval(timer);
        showResult(box, head, what, {status: 0, body: {reason: String(err)}});
      })
      .then(function () {
        // the last steps' events may arrive just after the reply: they are still listed for
        // a moment (unless another action starts)
        var mine = running;
        setTimeout(function () { if (running === mine) { running = null; } }, LATE_EVENTS);
        mine.done = true;
        buttons.forEach(function (b) { b.disabled = false; });
        if (action === "add" && box.getAttribute("data-result") !== "error") { form.reset(); }
        return refresh();
      });
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.matches && (form.matches("form.action") || form.matches("#add-watcher"))) { submit(form, e); }
  });

  // ages tick between samples
  setInterval(function () {
    qa("#processes td.age[data-age]").forEach(function (td) {
      var v = parseFloat(td.getAttribute("data-age"));
      if (!isNaN(v)) { td.setAttribute("data-age", String(v + 1)); td.textContent = age(v + 1); }
    });
  }, 1000);

  qa("svg.sparkline").forEach(adopt);
  var out = q("#output");
  if (out) { out.scrollTop = out.scrollHeight; }
  if (node) { connect(1000); }
})();
