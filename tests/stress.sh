#!/usr/bin/env bash
# make stress: run the suites that talk to real processes N times in a row, each in a
# new random order (pytest-randomly), and report every run's result. A flaky test is
# a defect: one failure in N runs fails this.
#   usage: tests/stress.sh [N] [PYTEST-ARGS...]   (default N=5; default suites below)
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
suites=(tests/integration tests/reliability)
for extra in tests/security tests/interop tests/fleet tests/web tests/identity; do
  [ -d "$extra" ] && suites+=("$extra")
done
[ $# -gt 0 ] && suites=("$@")
logs=$(mktemp -d -t consrv-stress.XXXXXX)
failed=0
echo "stress: ${runs} runs of ${suites[*]} (logs in ${logs})"
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  .venv/bin/pytest -p no:cacheprovider "${suites[@]}" >"${logs}/run-${i}.log" 2>&1
  status=$?
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' "${logs}/run-${i}.log" | tail -1)
  seed=$(grep -o 'Using --randomly-seed=[0-9]*' "${logs}/run-${i}.log" | head -1)
  printf 'run %d/%d: %s (%ss, %s)\n' "$i" "$runs" "${summary:-no summary, exit $status}" "$(( $(date +%s) - start ))" "${seed:-no seed}"
  if [ "$status" -ne 0 ]; then
    failed=$((failed + 1))
    grep -E '^(FAILED|ERROR) ' "${logs}/run-${i}.log" | sed 's/^/    /'
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "stress: ${failed} of ${runs} runs failed (logs in ${logs})"
  exit 1
fi
echo "stress: ${runs} of ${runs} runs passed"
