// circushttpd, the pool's watchers page and a job's page: rows patched from /ws/pool (summed on
// the server), sorting and the name filter in place, pool-wide operations with their progress.
// The pages work without it (the sort links, the filter form, the posts and the job page).
(function () {
  "use strict";
  var view = meta("circus-pool"), tag = meta("circus-tag") || "";
  var jobBuffer = null;        // job messages that came while the panel was being fetched

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : null;
  }
  function q(sel, root) { return (root || document).querySelector(sel); }
  function qa(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function attr(v) { return String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"'); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function natural(a, b) {
    var x = String(a).toLowerCase().split(/(\d+)/), y = String(b).toLowerCase().split(/(\d+)/);
    for (var i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] === y[i]) { continue; }
      var nx = /^\d+$/.test(x[i]), ny = /^\d+$/.test(y[i]);
      if (nx && ny) { return parseInt(x[i], 10) - parseInt(y[i], 10); }
      return x[i] < y[i] ? -1 : 1;
    }
    return x.length - y.length;
  }
  function watcherHref(node, name) {
    return "/node/" + encodeURIComponent(node) + "/watcher/" + encodeURIComponent(name);
  }

  // -- sorting and filtering in place ----------------------------------------------------------
  var DESC = {name: false, nodes: true, alive: true, wanted: true, unhealthy: true};

  function table() { return q("#pool-watchers"); }

  function sortRows() {
    var t = table();
    if (!t) { return; }
    var by = t.getAttribute("data-sort") || "name", desc = t.getAttribute("data-order") === "desc";
    var body = q("tbody", t), rows = qa("tr[data-watcher]", body);
    rows.sort(function (a, b) {
      var na = a.getAttribute("data-name"), nb = b.getAttribute("data-name");
      if (by === "name") { return desc ? natural(nb, na) : natural(na, nb); }
      var va = parseInt(a.getAttribute("data-" + by), 10), vb = parseInt(b.getAttribute("data-" + by), 10);
      return (va === vb) ? natural(na, nb) : (desc ? vb - va : va - vb);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function filterRows() {
    var input = q("#filter-name");
    var needle = input ? input.value.trim().toLowerCase() : "";
    var shown = 0;
    qa("#pool-watchers tr[data-watcher]").forEach(function (r) {
      var hit = r.getAttribute("data-watcher").indexOf(needle) >= 0;
      r.hidden = !hit;
      if (hit) { shown++; }
    });
    var count = q("#pool-watchers-count");
    if (count) { count.textContent = String(shown); }
  }

  function keepInUrl() {
    var t = table(), input = q("#filter-name"), params = new URLSearchParams();
    if (input && input.value.trim()) { params.set("name", input.value.trim()); }
    if (tag) { params.set("tag", tag); }
    if (t) {
      params.set("sort", t.getAttribute("data-sort") || "name");
      params.set("order", t.getAttribute("data-order") || "asc");
      var form = q("#watchers-filter");
      if (form) {
        form.elements.sort.value = params.get("sort");
        form.elements.order.value = params.get("order");
      }
    }
    history.replaceState(null, "", "/watchers?" + params.toString());
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest ? e.target.closest("#pool-watchers thead [data-sort] a, #pool-watchers thead a[data-sort]") : null;
    if (!link) { return; }
    e.preventDefault();
    var by = link.getAttribute("data-sort") || link.parentNode.getAttribute("data-sort"), t = table();
    var desc = t.getAttribute("data-sort") === by ? t.getAttribute("data-order") !== "desc" : DESC[by];
    t.setAttribute("data-sort", by);
    t.setAttribute("data-order", desc ? "desc" : "asc");
    sortRows();
    keepInUrl();
  });

  var nameInput = q("#filter-name");
  if (nameInput) {
    nameInput.addEventListener("input", function () { filterRows(); keepInUrl(); });
  }
  var tagSelect = q("#filter-tag");
  if (tagSelect) {       // another set of nodes: the server sums them again
    tagSelect.addEventListener("change", function () { q("#watchers-filter").submit(); });
  }

  // -- the rows, patched from the server's changes -----------------------------------------------
  var refreshing = null;
  function refresh() {
    if (refreshing) { return refreshing; }
    refreshing = fetch(location.href, {credentials: "same-origin", headers: {Accept: "text/html"}})
      .then(function (r) {
        if (r.redirected && r.url.indexOf("/login") >= 0) { location.reload(); }
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        qa("[data-refresh][id]", doc).forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (!old || old.contains(document.activeElement)) { return; }
          var open = qa("details[open]", old).map(function (d) { return d.closest("tr").getAttribute("data-watcher"); });
          var t = table(), copy = document.importNode(fresh, true);
          if (fresh.id === "pool-watchers" && t) {
            copy.setAttribute("data-sort", t.getAttribute("data-sort"));
            copy.setAttribute("data-order", t.getAttribute("data-order"));
            copy.setAttribute("data-updates", t.getAttribute("data-updates") || "0");
            open.forEach(function (key) {
              var d = q('tr[data-watcher="' + attr(key) + '"] details', copy);
              if (d) { d.open = true; }
            });
          }
          old.replaceWith(copy);
        });
        sortRows();
        filterRows();
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () { refreshing = null; });
    return refreshing;
  }

  function entryItem(e, name) {
    var li = el("li", "entry tone-" + e.tone);
    li.setAttribute("data-node", e.node);
    li.setAttribute("data-state", e.state);
    if (e.trouble) { li.setAttribute("data-trouble", e.trouble); }
    li.setAttribute("data-alive", String(e.alive));
    li.setAttribute("data-wanted", String(e.wanted));
    var a = el("a", "watcher-link", e.node);
    a.href = watcherHref(e.node, name);
    a.title = e.reason || e.state;
    li.appendChild(a);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "procs", e.alive + "/" + e.wanted));
    return li;
  }

  function unhealthyCell(td, row) {
    td.textContent = "";
    td.setAttribute("data-unhealthy", String(row.unhealthy));
    if (!row.unhealthy) {
      var ok = el("span", "badge tone-ok", "healthy");
      ok.setAttribute("data-tone", "ok");
      td.appendChild(ok);
      return;
    }
    var b = el("span", "badge tone-" + row.tone + " s-troubled", row.unhealthy + " unhealthy");
    b.setAttribute("data-tone", row.tone);
    td.appendChild(b);
    var ul = el("ul", "unhealthy");
    row.troubled.forEach(function (e) {
      var li = el("li");
      li.setAttribute("data-node", e.node);
      li.setAttribute("data-trouble", e.trouble);
      var a = el("a", "watcher-link", e.node);
      a.href = watcherHref(e.node, row.name);
      if (e.reason) { a.title = e.reason; }
      li.appendChild(a);
      li.appendChild(document.createTextNode(" "));
      var tone = e.trouble === "fatal" ? "bad" : "warn";
      var badge = el("span", "badge tone-" + tone, e.trouble);
      badge.setAttribute("data-tone", tone);
      badge.setAttribute("data-trouble", e.trouble);
      li.appendChild(badge);
      ul.appendChild(li);
    });
    td.appendChild(ul);
  }

  function patchRow(tr, row) {
    ["nodes", "alive", "wanted", "unhealthy"].forEach(function (k) {
      tr.setAttribute("data-" + k, String(k === "nodes" ? row.count : row[k]));
    });
    tr.setAttribute("data-health", row.tone);
    q("td.nodes .n", tr).textContent = String(row.count);
    q("td.procs .alive", tr).textContent = String(row.alive);
    q("td.procs .wanted", tr).textContent = String(row.wanted);
    unhealthyCell(q("td.unhealthy-cell", tr), row);
    var list = q("ul.entries", tr);
    Object.keys(row.entries).forEach(function (node) {
      var old = q('li[data-node="' + attr(node) + '"]', list), e = row.entries[node];
      if (!e) { if (old) { old.remove(); } return; }
      var li = entryItem(e, tr.getAttribute("data-name"));
      if (old) { old.replaceWith(li); } else { list.appendChild(li); }
    });
    var batch = q("form.rolling input[name=batch]", tr);
    if (batch) { batch.max = String(Math.max(1, row.count)); }
    tr.setAttribute("data-updated", String(Date.now()));
  }

  function onWatchers(m) {
    var t = table();
    if (!t) { return; }
    var whole = false;
    m.rows.forEach(function (row) {
      var tr = q('tr[data-watcher="' + attr(row.key) + '"]', t);
      if (tr) { patchRow(tr, row); } else { whole = true; }       // a new watcher: its row
    });
    if (m.gone.length || m.unanswered !== undefined) { whole = true; }
    var answered = q("#answered");
    if (answered) { answered.textContent = String(m.answered); }
    t.setAttribute("data-updates", String(parseInt(t.getAttribute("data-updates") || "0", 10) + 1));
    if (whole) { refresh(); return; }
    sortRows();
    filterRows();
  }

  // -- jobs ----------------------------------------------------------------------------------------
  function panel() { return q("#job"); }

  function loadPanel(id) {
    jobBuffer = jobBuffer || [];
    return fetch("/jobs/" + encodeURIComponent(id), {credentials: "same-origin", headers: {Accept: "text/html"}})
      .then(function (r) { return r.text(); })
      .then(function (text) {
        var fresh = q("#job", new DOMParser().parseFromString(text, "text/html"));
        if (!fresh) { return; }
        var copy = document.importNode(fresh, true), old = panel();
        if (old) { old.replaceWith(copy); } else {
          var slot = q("#job-slot");
          slot.textContent = "";
          slot.appendChild(copy);
        }
      })
      .catch(function () { /* the next message tries again */ })
      .then(function () {
        var waiting = jobBuffer || [];
        jobBuffer = null;
        waiting.forEach(onJob);
      });
  }

  function onJob(m) {
    if (m.phase === "ended" && m.order === null && q("#jobs-list")) { refresh(); }   // the list
    if (jobBuffer) { jobBuffer.push(m); return; }
    var box = panel();
    if (!box || box.getAttribute("data-job") !== m.id) { return; }
    if (m.seq <= parseInt(box.getAttribute("data-seq") || "0", 10)) { return; }
    var labels = Object.keys(m.items);
    var unknown = labels.some(function (l) { return !q('#job-items li[data-item="' + attr(l) + '"]', box); });
    if (m.phase === "ended" || unknown) { loadPanel(m.id); return; }
    labels.forEach(function (l) {
      var i = m.items[l], li = q('#job-items li[data-item="' + attr(l) + '"]', box);
      li.className = "chip st-" + i.state;
      li.setAttribute("data-state", i.state);
      li.title = i.reason || i.note || i.state;
      var failed = q('#job-failed li[data-item="' + attr(l) + '"]', box);
      if (i.state === "failed" && !failed) {
        var f = el("li");
        f.setAttribute("data-item", l);
        f.appendChild(el("b", "", i.node));
        f.appendChild(document.createTextNode(": " + i.reason));
        q("#job-failed", box).appendChild(f);
      }
    });
    Object.keys(m.counts).forEach(function (s) {
      var c = q('#job-counts [data-count="' + s + '"]', box);
      if (c) { c.textContent = m.counts[s] + " " + s.replace("_", " "); }
    });
    q("#job-head", box).textContent = m.headline;
    box.setAttribute("data-seq", String(m.seq));
    box.setAttribute("data-phase", m.phase);
    box.setAttribute("data-state", m.state);
  }

  function refused(form, status, body) {
    var slot = q("#job-slot") || form.parentNode;
    var box = el("section", "progress failed");
    box.id = "job";
    box.setAttribute("data-result", "error");
    box.setAttribute("data-status", String(status));
    box.appendChild(el("div", "banner-title", (form.getAttribute("data-what") || "the operation") + ": refused"));
    box.appendChild(el("div", "banner-reason", body.reason || body.error || ("HTTP " + status)));
    var old = panel();
    if (old) { old.replaceWith(box); } else { slot.textContent = ""; slot.appendChild(box); }
  }

  function submit(form, e) {
    if (!window.fetch) { return; }
    e.preventDefault();
    var buttons = qa("button", form);
    buttons.forEach(function (b) { b.disabled = true; });
    var what = form.id === "pool-add" ? "add " + (form.elements.name.value || "") :
      "rolling " + form.elements.action.value + " of " + form.elements.watcher.value;
    form.setAttribute("data-what", what);
    fetch(form.getAttribute("action"), {method: "POST", body: new FormData(form), credentials: "same-origin",
                                        headers: {Accept: "application/json"}})
      .then(function (r) {
        return r.json().then(function (j) { return {status: r.status, body: j}; },
                             function () { return {status: r.status, body: {}}; });
      })
      .then(function (res) {
        if (res.status !== 202 || !res.body.job) { refused(form, res.status, res.body); return; }
        if (!q("#job-slot")) { location.href = res.body.url; return; }   // the job page
        return loadPanel(res.body.job.id);
      })
      .catch(function (err) { refused(form, 0, {reason: String(err)}); })
      .then(function () {
        buttons.forEach(function (b) { b.disabled = false; });
        var slot = q("#job");
        if (slot) { slot.scrollIntoView({block: "nearest"}); }
      });
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.matches && (form.matches("form.rolling") || form.matches("#pool-add") || form.matches("#job-resume"))) {
      submit(form, e);
    }
  });

  // -- the socket ----------------------------------------------------------------------------------
  function connect(delay) {
    if (!window.WebSocket) { return; }
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/pool" +
      (tag ? "?tag=" + encodeURIComponent(tag) : "");
    var ws = new WebSocket(url);
    ws.onopen = function () { delay = 1000; document.body.setAttribute("data-live", "open"); };
    ws.onmessage = function (e) {
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (m.type === "watchers") { onWatchers(m); }
      else if (m.type === "job") { onJob(m); }
    };
    ws.onclose = function () {
      document.body.setAttribute("data-live", "closed");
      setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay);
    };
  }

  if (view) {
    filterRows();
    connect(1000);
    var box = panel();          // a job page, or a panel left from a refresh: caught up once
    if (box && box.getAttribute("data-phase") !== "ended") { loadPanel(box.getAttribute("data-job")); }
  }
})();
