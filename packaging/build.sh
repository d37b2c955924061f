#!/usr/bin/env bash
# Build consrv's .deb and .rpm (docs/packaging.md): `make package`, or
#   packaging/build.sh [-r RELEASE] [-o OUTDIR] [-k]
#     -r RELEASE  the package release (default 1): a newer build of the same version
#     -o OUTDIR   where the packages go (default build/packages)
#     -k          keep the staged tree of an earlier run (only nfpm runs again)
#
# What goes in:
#   /opt/consrv   a venv for the distribution's /usr/bin/python3.11 holding exactly
#                 requirements/runtime.txt (hashes checked), then consrv's own wheel
#                 (--no-deps). It is staged under build/pkgroot/opt/consrv: the real
#                 /opt/consrv of this machine is never touched. A venv is not
#                 relocatable only through the paths written into it (script
#                 shebangs, pyvenv.cfg's `command`, bin/activate*), so those are
#                 rewritten to /opt/consrv, and the bytecode is compiled with
#                 /opt/consrv as its path (compileall -s/-p).
#   consrv-pva  the pva extra for that venv: the packages requirements/pva.txt holds
#               and runtime.txt does not (p4p, pvxslibs, epicscorelibs, numpy, ...),
#               staged in build/pkgroot-pva, installed into /opt/consrv's site-packages.
#   Binary wheels are chosen for manylinux_2_28 (glibc 2.28, RHEL 8) whatever the
#   build machine runs, so one tree serves Debian 12 and RHEL 8/9.
set -euo pipefail
cd "$(dirname "$0")/.."

release=1 outdir=build/packages keep=0
while getopts r:o:k opt; do
  case $opt in
    r) release=$OPTARG ;;
    o) outdir=$OPTARG ;;
    k) keep=1 ;;
    *) echo "usage: $0 [-r RELEASE] [-o OUTDIR] [-k]" >&2; exit 2 ;;
  esac
done

PY=/usr/bin/python3.11          # the distribution's interpreter the venv runs on
PIP=.venv/bin/pip               # the build tools come from the test lock (make setup)
NFPM=.venv/bin/nfpm
stage=build/pkgroot
venv=$stage/opt/consrv
site=$venv/lib/python3.11/site-packages
pva_stage=build/pkgroot-pva
pva_site=$pva_stage/site-packages

[ -x "$PY" ] || { echo "build.sh: $PY is missing (apt-get install python3.11)" >&2; exit 1; }
[ -x "$NFPM" ] || { echo "build.sh: $NFPM is missing (make setup)" >&2; exit 1; }

# A locked set into a site-packages, nothing resolved: --require-hashes, --no-deps,
# wheels only. pip takes the platforms literally: every manylinux tag glibc 2.28 runs.
install_locked() {  # LOCKFILE TARGET
  local platforms=() tag
  for tag in 2_28 2_27 2_26 2_24 2_17 2014 2_12 2010 2_5 1; do
    platforms+=(--platform "manylinux${tag/#2_/_2_}_x86_64")
  done
  "$PIP" install -q --require-hashes --no-deps --no-compile --only-binary=:all: \
    "${platforms[@]}" --python-version 3.11 --implementation cp \
    --abi cp311 --abi abi3 --abi none --target "$2" -r "$1"
  rm -rf "$2/bin"               # --target puts the dependencies' scripts here: unused
}

stage_tree() {
  rm -rf "$stage" build/wheel
  mkdir -p "$stage" build/wheel
  "$PY" -m venv --without-pip "$venv"
  install_locked requirements/runtime.txt "$site"
  # consrv itself, built with the locked setuptools (no build isolation: nothing fetched).
  "$PIP" wheel -q --no-deps --no-build-isolation -w build/wheel .
  "$PIP" --python "$venv/bin/python" install -q --no-deps --no-compile build/wheel/consrv-*.whl
  # Paths written at install time: the staging directory becomes /opt/consrv.
  local here; here=$(realpath "$venv")
  grep -rlF "$here" "$venv/bin" "$venv/pyvenv.cfg" | xargs -r sed -i "s|$here|/opt/consrv|g"
  rm -f "$site"/consrv-*.dist-info/direct_url.json   # names the build directory
  if grep -rlF "$here" "$venv"; then
    echo "build.sh: the files above still name $here" >&2; exit 1
  fi
  # Bytecode as /opt/consrv sees it; checked-hash: valid whatever the files' mtimes.
  "$PY" -m compileall -q -j 0 --invalidation-mode checked-hash \
    -s "$(realpath "$stage")" -p / "$venv/lib"
  stage_files
}

# The pva lock's entries that the runtime lock lacks (hash lines included); every
# runtime pin must be in the pva lock as it is (`make lock` makes them so).
pva_only() {
  local pins; pins=$(grep -o '^[A-Za-z0-9][^ ]*==[^ ]*' requirements/runtime.txt)
  local missing; missing=$(grep -vxFf <(grep -o '^[A-Za-z0-9][^ ]*==[^ ]*' requirements/pva.txt) \
    <<<"$pins" || true)
  if [ -n "$missing" ]; then
    echo "build.sh: requirements/pva.txt lacks these runtime pins (make relock):" >&2
    echo "$missing" >&2; exit 1
  fi
  awk 'NR == FNR { if (/^[A-Za-z0-9].*==/) { split($1, a, "=="); have[a[1]] = 1 } next }
       /^[A-Za-z0-9].*==/ { split($1, a, "=="); keep = !(a[1] in have) }
       keep && !/^ *#/' requirements/runtime.txt requirements/pva.txt
}

stage_pva() {
  rm -rf "$pva_stage"
  mkdir -p "$pva_site"
  pva_only >"$pva_stage/pva-only.txt"
  install_locked "$pva_stage/pva-only.txt" "$pva_site"
  if [ -n "$(comm -12 <(ls "$site") <(ls "$pva_site"))" ]; then
    echo "build.sh: consrv-pva would replace files of consrv:" >&2
    comm -12 <(ls "$site") <(ls "$pva_site") >&2; exit 1
  fi
  "$PY" -m compileall -q -j 0 --invalidation-mode checked-hash \
    -s "$(realpath "$pva_site")" -p /opt/consrv/lib/python3.11/site-packages "$pva_site"
  if grep -rlF "$(realpath "$pva_stage")" "$pva_site"; then
    echo "build.sh: the files above name the staging directory" >&2; exit 1
  fi
}

stage_files() {
  mkdir -p "$stage/systemd"
  # The units as shipped in systemd/, with the package's paths for the program and docs.
  sed -e 's|/usr/local/bin/consrv|/usr/bin/consrv|g' \
      -e 's|/usr/local/share/doc/consrv|/usr/share/doc/consrv|g' \
      systemd/consrv.service >"$stage/systemd/consrv.service"
  if grep -n '^Exec.*/usr/local' "$stage/systemd/consrv.service"; then
    echo "build.sh: consrv.service still runs something from /usr/local" >&2; exit 1
  fi
  cp systemd/ioc@.service systemd/50-consrv-ioc.rules "$stage/systemd/"
}

if [ "$keep" = 1 ] && [ -x "$venv/bin/consrv" ] && [ -d "$pva_site/p4p" ]; then
  echo "build.sh: reusing the staged trees $stage and $pva_stage"
else
  stage_tree
  stage_pva
fi

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' consrv/__init__.py)
mkdir -p "$outdir"
export CONSRV_VERSION=$version CONSRV_RELEASE=$release CONSRV_STAGE=$stage
for packager in deb rpm; do
  for config in packaging/nfpm.yaml packaging/nfpm-pva.yaml; do
    "$NFPM" package --config "$config" --packager "$packager" --target "$outdir/"
  done
done
ls -l "$outdir"
