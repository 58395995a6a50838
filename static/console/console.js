// dialwhom console: local times, and the live list polled every 2 s (no framework, no build).
(function () {
  "use strict";

  function showTimes(root) {
    root.querySelectorAll(".time[data-time]").forEach(function (el) {
      var t = new Date(parseFloat(el.dataset.time) * 1000);
      el.textContent = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      el.title = t.toString();
    });
  }

  function span(cls, text) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text; // textContent: nothing from the server is ever parsed as HTML
    return el;
  }

  // the same markup as templates/console/_entry.html
  function entry(e, detailUrl) {
    var li = document.createElement("li");
    li.className = "entry";
    li.dataset.id = e.id;
    var a = document.createElement("a");
    a.href = detailUrl.replace("ID", encodeURIComponent(e.id));
    var time = span("time", "");
    time.dataset.time = e.time;
    a.appendChild(time);
    a.appendChild(span("caller", e.caller));
    a.appendChild(span("path path-" + e.path, e.path));
    a.appendChild(span("ms", Math.round(e.elapsed_ms) + " ms"));
    var first = span("first", "first: " + (e.first ? e.first.number + " " : "nobody"));
    if (e.first) {
      var why = document.createElement("small");
      why.textContent = "(" + e.first.why + ")";
      first.appendChild(why);
    }
    a.appendChild(first);
    e.skips.forEach(function (s) { a.appendChild(span("skip", "skipped: " + s)); });
    e.lookups.forEach(function (s) {
      if (s.outcome !== "found" && s.outcome !== "cache-hit") a.appendChild(span("skip", s.connector + ": " + s.outcome));
    });
    li.appendChild(a);
    return li;
  }

  function live(list) {
    var form = document.getElementById("filters");
    var status = document.getElementById("status");
    var seen = {};
    list.querySelectorAll(".entry").forEach(function (li) { seen[li.dataset.id] = true; });

    function query() {
      var params = new URLSearchParams(new FormData(form));
      return list.dataset.api + "?" + params.toString();
    }

    function render(doc, fresh) {
      var frag = document.createDocumentFragment();
      var next = {};
      doc.decisions.forEach(function (e) {
        var li = entry(e, list.dataset.detail);
        if (!fresh && !seen[e.id]) li.classList.add("new");
        next[e.id] = true;
        frag.appendChild(li);
      });
      seen = next;
      list.replaceChildren(frag);
      showTimes(list);
      var empty = document.getElementById("empty");
      if (empty) empty.hidden = doc.decisions.length > 0;
    }

    function poll(fresh) {
      fetch(query(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
          return r.json();
        })
        .then(function (doc) {
          render(doc, fresh);
          status.textContent = "Newest first; updated " + new Date().toLocaleTimeString() + ".";
        })
        .catch(function () { status.textContent = "Could not reach the service; retrying."; });
    }

    form.addEventListener("change", function () {
      history.replaceState(null, "", "?" + new URLSearchParams(new FormData(form)).toString());
      poll(true);
    });
    setInterval(function () { if (!document.hidden) poll(false); }, 2000);
  }

  showTimes(document);
  var list = document.getElementById("decisions");
  if (list) live(list);
})();
