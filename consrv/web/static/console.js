// One console, live and read-only. Console bytes go only to term.write(Uint8Array): never
// into HTML. No input path: stdin disabled, onData not wired, nothing is ever sent on the
// socket. OSC 52 (clipboard) swallowed, links inert, the title never bound.
(function () {
  "use strict";
  const STATE_PERIOD = 1000;
  const element = document.getElementById("terminal");
  const status = document.getElementById("status");
  const term = new Terminal({
    disableStdin: true,
    convertEol: false,
    scrollback: 10000,
    cursorBlink: false,
    allowProposedApi: false,
    linkHandler: { activate: function () {}, allowNonHttpProtocols: false },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.parser.registerOscHandler(52, function () { return true; });
  term.parser.registerOscHandler(8, function () { return true; });
  term.open(element);
  fit.fit();
  window.addEventListener("resize", function () { fit.fit(); });
  window.consrvTerminal = term; // for the browser tests: the screen as text

  function show(text, className) {
    status.textContent = text;
    status.className = "status " + className;
  }

  let retry = 500;
  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + element.dataset.stream);
    socket.binaryType = "arraybuffer";
    let first = true;
    socket.onopen = function () { show("live (read-only)", "live"); retry = 500; };
    socket.onmessage = function (event) {
      if (!(event.data instanceof ArrayBuffer)) return;
      if (first) { term.reset(); first = false; }
      term.write(new Uint8Array(event.data));
    };
    socket.onclose = function (event) {
      if (event.code === 1008) {
        show("closed: " + (event.reason || "not allowed"), "down");
        // Access taken away (a reload, signed out): the page goes too; the server says why.
        if (event.reason === "no longer shown") setTimeout(function () { window.location.reload(); }, 1000);
        return;
      }
      show("reconnecting", "down");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  connect();

  // The console's state in the header (UP, DOWN, IOC DOWN, RESTARTING ...), live; a
  // console of another host (through a gateway) has no header state here.
  const state = document.getElementById("state");
  const since = document.getElementById("since");
  if (!state) return;
  async function refreshState() {
    try {
      const response = await fetch(state.dataset.info, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const data = await response.json();
      window.consrvWall.badge(state, data.wall);
      window.consrvWall.since(since, data.wall, data.now);
    } catch (error) {
      state.title = "cannot refresh the state: " + error;
    }
  }
  setInterval(refreshState, STATE_PERIOD);
})();
