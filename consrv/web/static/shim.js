// Lets xterm.js run under a strict Content-Security-Policy (loaded before it, no inline script).
// xterm.js (6.0) styles its DOM renderer with <style> elements and, for 24-bit colour, style
// attributes; a CSP without 'unsafe-inline' refuses both. Style elements get this page's
// nonce (the CSP names it in style-src); a style attribute becomes the same declarations set
// through the CSSOM, which CSP does not govern. Nothing else changes.
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="consrv-style-nonce"]');
  const nonce = meta ? meta.content : "";
  const createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (tag, options) {
    const element = createElement.call(this, tag, options);
    if (String(tag).toLowerCase() === "style" && nonce) {
      element.setAttribute("nonce", nonce);
    }
    return element;
  };
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() === "style" && this.style) {
      this.style.cssText = String(value);
      return;
    }
    return setAttribute.call(this, name, value);
  };
})();
