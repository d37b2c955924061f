// What the list page and a console page's header share: a state's badge, a time as
// "HH:MM:SS UTC" (with the date when it is not today's), an age. As consrv/web/wall.py.
(function () {
  "use strict";
  function clock(iso) {
    if (!iso) return "-";
    const moment = new Date(iso);
    const text = moment.toISOString(); // always UTC
    const today = new Date().toISOString().slice(0, 10);
    const day = text.slice(0, 10) === today ? "" : text.slice(0, 10) + " ";
    return day + text.slice(11, 19) + " UTC";
  }

  function age(iso, now) {
    if (!iso) return "never";
    const whole = Math.max(0, Math.floor((new Date(now) - new Date(iso)) / 1000));
    if (whole < 60) return whole + "s";
    if (whole < 3600) return Math.floor(whole / 60) + "m";
    if (whole < 86400) {
      const minutes = Math.floor((whole % 3600) / 60);
      return Math.floor(whole / 3600) + "h" + (minutes < 10 ? "0" : "") + minutes + "m";
    }
    return Math.floor(whole / 86400) + "d";
  }

  function level(state) {
    return "level-" + String(state).replace(/[^a-z-]/g, "");
  }

  function badge(element, wall) {
    element.textContent = wall.label;
    element.title = wall.meaning;
    element.className = "badge " + level(wall.state);
  }

  function since(element, wall, now) {
    // Another host's console, through a gateway: since when is not known here.
    element.textContent = !wall.since ? wall.label.toLowerCase()
      : wall.label.toLowerCase() + " since " + clock(wall.since) + " (" + age(wall.since, now) + ")";
    element.title = wall.since || "";
  }

  window.consrvWall = { clock: clock, age: age, level: level, badge: badge, since: since };
})();
