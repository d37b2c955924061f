// The console list, refreshed from /api/consoles (problems first, as the server sorts
// them). Names and values go in as text, never HTML. Times in UTC, ages from the
// server's clock.
(function () {
  "use strict";
  const PERIOD = 2000;
  const wall = window.consrvWall;
  const table = document.getElementById("consoles");
  const body = table.querySelector("tbody");
  const fleet = table.dataset.fleet === "1"; // a gateway: every host, with a host column

  function cell(text, className, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  }

  function link(href, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
    return td;
  }

  function row(c, now) {
    const tr = document.createElement("tr");
    const here = c.local !== false; // another host's console: its page is through us
    tr.dataset.name = c.id || c.name;
    tr.dataset.state = c.wall.state;
    const path = encodeURIComponent(here ? c.name : c.name + "@" + c.host);
    tr.appendChild(link("/c/" + path, here ? c.name : c.id || c.name, "name"));
    if (fleet) tr.appendChild(cell(c.host, "host"));
    const state = cell("", "state");
    const span = document.createElement("span");
    wall.badge(span, c.wall);
    state.appendChild(span);
    tr.appendChild(state);
    const since = cell("", "since");
    wall.since(since, c.wall, now);
    tr.appendChild(since);
    tr.appendChild(cell(c.writer || "-", "wide"));
    tr.appendChild(cell(String(c.viewers), "wide"));
    tr.appendChild(cell(c.ioc ? (c.ioc.active_state || "?") : "-", "wide unit"));
    const output = c.last_output ? wall.age(c.last_output, now) + " ago" : "never";
    tr.appendChild(cell(output, "output", c.last_output || ""));
    tr.appendChild(link("/logs/" + path + "/", "logs", "wide"));
    return tr;
  }

  function counts(data) {
    const spans = Object.entries(data.counts).map(function (pair) {
      const span = document.createElement("span");
      span.className = "count " + wall.level(pair[0]);
      span.textContent = pair[1] + " " + pair[0].replace("-", " ");
      return span;
    });
    document.getElementById("counts").replaceChildren(...spans);
  }

  async function refresh() {
    try {
      const response = await fetch("/api/consoles", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      const data = await response.json();
      const rows = data.consoles.map(function (c) { return row(c, data.now); });
      if (!rows.length) {
        const tr = document.createElement("tr");
        const td = cell("There are no consoles you may see.");
        td.colSpan = fleet ? 9 : 8;
        tr.appendChild(td);
        rows.push(tr);
      }
      body.replaceChildren(...rows);
      counts(data);
      document.getElementById("missing").textContent = (data.missing_peers || []).map(function (m) {
        return m.host + " unreachable since " + m.since + (m.error ? ": " + m.error : "") + ".";
      }).join(" ");
      document.getElementById("refreshed").textContent =
        "Times in " + data.zone + ". Refreshed " + wall.clock(data.now) + ".";
    } catch (error) {
      document.getElementById("refreshed").textContent = "Cannot refresh: " + error;
    }
  }

  setInterval(refresh, PERIOD);
})();
