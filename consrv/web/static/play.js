// A console's recording, replayed through xterm.js. The cast (asciicast v2) is fetched from
// the same origin; output goes only to term.write(string): never into HTML. Markers are
// shown with textContent. Nothing is ever sent anywhere; no input path.
// Seeking never replays the whole recording: the terminal is reset and only the output
// just before the target is written again (enough to fill the screen and some scrollback),
// so a seek costs the same in a cast of 100,000 lines as in one of 100.
(function () {
  "use strict";
  const CONTEXT_CHARS = 256 * 1024; // output written again before a seek target
  const player = document.getElementById("player");
  const status = document.getElementById("status");
  const toggle = document.getElementById("toggle");
  const speedBox = document.getElementById("speed");
  const seekBar = document.getElementById("seek");
  const clock = document.getElementById("clock");
  const markerText = document.getElementById("marker");
  const term = new Terminal({
    disableStdin: true, convertEol: false, scrollback: 5000, cursorBlink: false,
    cols: 80, rows: 24, allowProposedApi: false,
    linkHandler: { activate: function () {}, allowNonHttpProtocols: false },
  });
  term.parser.registerOscHandler(52, function () { return true; });
  term.parser.registerOscHandler(8, function () { return true; });
  term.open(document.getElementById("terminal"));

  // The recording: parallel arrays, times in seconds from the header's timestamp.
  let times = [], codes = [], data = [], markers = [], zero = 0, duration = 0;
  // Where the replay is: `index` is the next event to write, `position` the time shown.
  let index = 0, position = 0, playing = false, speed = 1, startedAt = 0, startedFrom = 0;
  let timer = null;

  function show(text, className) { status.textContent = text; status.className = "status " + className; }

  function load(text) {
    const lines = text.split("\n");
    zero = JSON.parse(lines[0]).timestamp || 0;
    let last = 0;
    for (let i = 1; i < lines.length; i++) {
      if (!lines[i]) continue;
      let event;
      try { event = JSON.parse(lines[i]); } catch (e) { continue; }
      if (!Array.isArray(event) || typeof event[2] !== "string") continue;
      last = Math.max(last, Number(event[0]) || 0);
      if (event[1] === "m") markers.push(times.length);
      times.push(last); codes.push(event[1]); data.push(event[2]);
    }
    duration = times.length ? times[times.length - 1] : 0;
    seekBar.max = String(duration);
  }

  function firstAfter(t) { // the first event index with time > t (binary search)
    let lo = 0, hi = times.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (times[mid] <= t) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function stamp(t) { return new Date((zero + t) * 1000).toISOString().replace(".000Z", "Z"); }

  function showPosition() {
    seekBar.value = String(position);
    clock.textContent = stamp(position) + "  (" + position.toFixed(1) + " / " + duration.toFixed(1) + " s)";
  }

  function writeUpTo(end) { // events [index, end): output batched into one write
    let out = "";
    for (; index < end; index++) {
      if (codes[index] === "o") out += data[index];
      else if (codes[index] === "m") markerText.textContent = stamp(times[index]) + " " + data[index];
    }
    if (out) term.write(out);
  }

  function seek(t) {
    position = Math.max(0, Math.min(t, duration));
    const end = firstAfter(position);
    let from = end, chars = 0;
    while (from > 0 && chars < CONTEXT_CHARS) { from--; if (codes[from] === "o") chars += data[from].length; }
    term.reset();
    markerText.textContent = "";
    index = from;
    writeUpTo(end);
    startedAt = performance.now(); startedFrom = position;
    showPosition();
    if (playing) schedule();
  }

  function tick() {
    timer = null;
    if (!playing) return;
    position = Math.min(duration, startedFrom + (performance.now() - startedAt) / 1000 * speed);
    writeUpTo(firstAfter(position));
    showPosition();
    if (index >= times.length) { pause(); show("end of recording", "down"); return; }
    schedule();
  }

  function schedule() { // wake at the next event's time (at most 100 ms later, for the clock)
    if (timer !== null) clearTimeout(timer);
    const wait = index < times.length ? (times[index] - position) / speed * 1000 : 100;
    timer = setTimeout(tick, Math.max(0, Math.min(wait, 100)));
  }

  function play() {
    if (index >= times.length) seek(0);
    playing = true; startedAt = performance.now(); startedFrom = position;
    toggle.textContent = "pause"; show("playing (" + speed + "x)", "live"); schedule();
  }

  function pause() {
    playing = false; toggle.textContent = "play";
    if (timer !== null) { clearTimeout(timer); timer = null; }
    show("paused", "down");
  }

  function nextMarker() {
    for (const i of markers) { if (times[i] > position + 0.0005) { seek(times[i]); writeUpTo(i + 1); return; } }
  }

  toggle.addEventListener("click", function () { if (playing) pause(); else play(); });
  speedBox.addEventListener("change", function () {
    speed = Number(speedBox.value) || 1;
    startedAt = performance.now(); startedFrom = position;
    if (playing) { show("playing (" + speed + "x)", "live"); schedule(); }
  });
  seekBar.addEventListener("input", function () { seek(Number(seekBar.value)); });
  document.getElementById("next").addEventListener("click", nextMarker);

  // For the browser tests: the terminal, and the player's state and controls.
  window.consrvTerminal = term;
  window.consrvPlayer = {
    state: function () { return { position: position, index: index, events: times.length, duration: duration, playing: playing, zero: zero }; },
    times: function () { return times; },
    seek: seek, play: play, pause: pause, nextMarker: nextMarker,
    setSpeed: function (n) { speedBox.value = String(n); speedBox.dispatchEvent(new Event("change")); },
  };

  fetch(player.dataset.cast, { credentials: "same-origin" }).then(function (response) {
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return response.text();
  }).then(function (text) {
    load(text);
    const at = Number(player.dataset.at);
    seek(at ? at - zero : 0);
    show(times.length ? "ready (" + times.length + " events)" : "nothing recorded in this range", "down");
    window.consrvPlayer.ready = true;
  }).catch(function (error) { show("cannot load: " + error.message, "down"); });
})();
