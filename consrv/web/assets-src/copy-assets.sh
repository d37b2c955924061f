#!/bin/sh
# Maintainers only: refresh the browser view's vendored front end from npm.
# Installs exactly what package-lock.json pins, then copies the built files and their
# licences into ../static/vendor/ (committed: pip install and CI never need npm or a CDN).
# Bump a version: edit package.json, run `npm install --ignore-scripts` here, then this.
set -eu
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund
out=../static/vendor
mkdir -p "$out"
# The source-map comment is left out: the maps are not shipped.
strip() { sed '/^\/\/# sourceMappingURL=/d' "$1" > "$2"; }
strip node_modules/@xterm/xterm/lib/xterm.js "$out/xterm.js"
strip node_modules/@xterm/addon-fit/lib/addon-fit.js "$out/addon-fit.js"
cp node_modules/@xterm/xterm/css/xterm.css "$out/xterm.css"
cp node_modules/@xterm/xterm/LICENSE "$out/LICENSE.xterm"
cp node_modules/@xterm/addon-fit/LICENSE "$out/LICENSE.addon-fit"
{
  echo "Vendored by consrv/web/assets-src/copy-assets.sh from npm (package-lock.json):"
  for p in xterm addon-fit; do
    node -e "const p=require('./node_modules/@xterm/$p/package.json'); console.log(p.name + ' ' + p.version + ' (' + p.license + ')')"
  done
} > "$out/VERSIONS"
