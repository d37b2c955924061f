// The console list, refreshed from /api/consoles. Names and values go in as text, never HTML.
(function () {
  "use strict";
  const PERIOD = 2000;
  const table = document.getElementById("consoles");
  const body = table.querySelector("tbody");
  const fleet = table.dataset.fleet === "1"; // a gateway: every host, with a host column

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function link(href, text) {
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
    return td;
  }

  function row(c) {
    const tr = document.createElement("tr");
    const here = c.local !== false; // another host's console: no page here
    tr.dataset.name = c.id || c.name;
    const path = encodeURIComponent(c.name);
    tr.appendChild(here ? link("/c/" + path, c.name)
      : link("/c/" + encodeURIComponent(c.name + "@" + c.host), c.id || c.name));
    if (fleet) tr.appendChild(cell(c.host, "host"));
    tr.appendChild(cell(c.state, "state state-" + c.state.replace(/[^a-z-]/g, "")));
    tr.appendChild(cell(c.writer || "-"));
    tr.appendChild(cell(String(c.viewers)));
    tr.appendChild(cell(c.ioc ? (c.ioc.active_state || "?") : "-"));
    tr.appendChild(cell(c.last_output || "-"));
    tr.appendChild(here ? link("/logs/" + path + "/", "logs") : cell("-"));
    return tr;
  }

  async function refresh() {
    try {
      const response = await fetch("/api/consoles", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      const data = await response.json();
      const rows = data.consoles.map(row);
      if (!rows.length) {
        const tr = document.createElement("tr");
        const td = cell("There are no consoles you may see.");
        td.colSpan = fleet ? 8 : 7;
        tr.appendChild(td);
        rows.push(tr);
      }
      body.replaceChildren(...rows);
      document.getElementById("missing").textContent = (data.missing_peers || []).map(function (m) {
        return m.host + " unreachable since " + m.since + (m.error ? ": " + m.error : "") + ".";
      }).join(" ");
      document.getElementById("refreshed").textContent =
        "Refreshed " + new Date().toLocaleTimeString() + ".";
    } catch (error) {
      document.getElementById("refreshed").textContent = "Cannot refresh: " + error;
    }
  }

  setInterval(refresh, PERIOD);
})();
