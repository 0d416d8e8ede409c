#!/usr/bin/env bash
# "Tail of an 8 MiB transcript visible in headless Chromium <= 300 ms": the whole benchmark in one command.
#
#   bench/browser/tail_visible.sh [--runs N] [--ssr-runs N] [--cache cold|warm] [--size BYTES] [--viewport WxH]
#                                 [--rows-runs N] [--baseline-runs N] [--parts] [--no-build] [--keep]
#
# 1. builds (unless --no-build) the site (scripts/build-site.sh -> target/site) and the release server and
#    recorder, which embed target/site, in $CARGO_TARGET_DIR (default /work/target-bench), under `nice`;
# 2. starts `cmdop-inspector serve --demo` on a fresh temp data dir and a free port, raises the demo fleet's
#    transcript ring buffer to 16 MiB (`admin fleet set --transcript-limit`), creates an API token;
# 3. records a generated build log of exactly --size bytes (default 8 MiB; ~68,000 lines of 80-120 columns with
#    SGR colors, last line TAIL-MARKER-<random>) with the real recorder:
#    `cmdop record --headless --machine web-1 --cols 120 --rows 40 -- sh -c 'stty -opost; cat LOG'`
#    and checks the server stored all of it (total = retained, nothing truncated);
# 4. runs bench/browser/tail_visible.mjs (Playwright from end2end/node_modules driving /usr/bin/chromium);
#    then the same for a 4 KiB log (--baseline-runs N, default 10; 0 skips it): the floor of any session page;
# 5. runs bench/browser/html_rows.mjs (--rows-runs N times each, default 10; 0 skips it): the page's HTML served
#    statically with fewer snapshot rows and no JS/WASM, i.e. the browser's share alone;
# 6. with --parts: times the server's steps outside the server (bench/browser/server_parts: feeding the transcript
#    into cmdop-transcript's Document, writing the snapshot's HTML, and the alternatives) on the same log;
# 7. stops the server and removes the temp dir (--keep leaves both for poking at; the URL is printed).
# Output: the report on stdout, all samples in $OUT_DIR/tail_visible.json (default /tmp/tail-visible-<time>).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

runs=20 ssr_runs=10 rows_runs=10 baseline_runs=10 viewport=1920x1080 cache=cold size=$((8 * 1024 * 1024)) build=1 keep=0 parts=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --ssr-runs) ssr_runs=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --rows-runs) rows_runs=$2; shift 2 ;;
    --baseline-runs) baseline_runs=$2; shift 2 ;;
    --viewport) viewport=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    --parts) parts=1; shift ;;
    *) extra+=("$1"); shift ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
bin="$CARGO_TARGET_DIR/release"
chromium="${CHROMIUM:-/usr/bin/chromium}"
out_dir="${OUT_DIR:-/tmp/tail-visible-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out_dir"

# ---- 1. build ----
if [ ! -x "$chromium" ]; then
  echo "no Chromium at $chromium: run scripts/tools.sh --e2e (Debian's chromium; never 'npx playwright install')" >&2
  exit 1
fi
if [ ! -d end2end/node_modules/@playwright/test ]; then
  (cd end2end && npm ci --no-audit --no-fund)
fi
if [ "$build" = 1 ]; then
  nice scripts/build-site.sh
  nice cargo build --release -p cmdop-inspector-server -p cmdop-agent
  if [ "$parts" = 1 ]; then
    (cd bench/browser/server_parts && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/server-parts" nice cargo build --release)
  fi
fi
for b in cmdop-inspector cmdop; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b (run without --no-build)" >&2; exit 1; }
done
if [ "$build" = 0 ] && [ "${CMDOP_SITE_DIR:-target/site}/pkg/cmdop-inspector_bg.wasm" -nt "$bin/cmdop-inspector" ]; then
  echo "warning: ${CMDOP_SITE_DIR:-target/site} is newer than $bin/cmdop-inspector (which embeds it): rebuild, or hydration may fail" >&2
fi

# ---- 2. server ----
data=$(mktemp -d /tmp/tail-visible-data.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && [ "$keep" = 0 ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "$keep" = 0 ]; then rm -rf "$data"; else echo "kept: server $base (pid $server_pid), data $data" >&2; fi
}
trap cleanup EXIT
CMDOP_LOG=warn "$bin/cmdop-inspector" serve --demo --listen "127.0.0.1:$port" --data-dir "$data" \
  >"$out_dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  curl -fs "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$out_dir/server.log" >&2; exit 1; }
  sleep 0.1
done
admin() { "$bin/cmdop-inspector" admin --data-dir "$data" "$@"; }
admin fleet set demo --transcript-limit 16MiB >&2
token=$(admin token create demo@cmdop.local --name tail-bench | tail -1)
[ -n "$token" ] || { echo "could not read the token from 'admin token create'" >&2; exit 1; }

# ---- 3. record ----
# record SIZE NAME: records a generated log of SIZE bytes; sets $marker, $log, $session.
record() {
  marker="TAIL-MARKER-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  log="$data/$2.log"
  node bench/browser/gen_log.mjs "$log" "$marker" "$1" 1 >&2
  local t0 t1
  t0=$(date +%s.%N)
  CMDOP_SERVER="$base" CMDOP_TOKEN="$token" "$bin/cmdop" record --headless --machine web-1 --cols 120 --rows 40 \
    -- sh -c "stty -opost; cat '$log'" >"$out_dir/record-$2.log" 2>&1
  t1=$(date +%s.%N)
  session=$(curl -fs -H "Authorization: Bearer $token" "$base/api/v1/sessions?limit=200" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const hit = JSON.parse(s).sessions.find((x) => x.command.includes(process.argv[1]));
      if (!hit) process.exit(1);
      console.log(hit.id);
    });' "$log")
  curl -fs -H "Authorization: Bearer $token" "$base/api/v1/sessions/$session" >"$out_dir/session-$2.json"
  node -e '
    const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const t = s.transcript, want = Number(process.argv[2]);
    console.error(`recorded session ${s.id}: state ${s.state}, exit ${s.exit_code}, total ${t.total_bytes} B, retained ${t.retained_bytes} B, truncated ${t.truncated_bytes} B, gaps ${t.gaps.length}, ${s.cols}x${s.rows}, recording took ${process.argv[3]} s`);
    if (s.state !== "ended" || t.total_bytes !== want || t.retained_bytes !== want || t.truncated_bytes !== 0 || t.gaps.length)
      { console.error("the transcript is not the whole log: see above"); process.exit(1); }
  ' "$out_dir/session-$2.json" "$1" "$(python3 -c "print(round($t1 - $t0, 2))")"
}
small=$(curl -fs -H "Authorization: Bearer $token" "$base/api/v1/sessions?limit=200" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    console.log(JSON.parse(s).sessions.find((x) => x.command === "palette")?.id ?? "");
  });')
if [ "$baseline_runs" -gt 0 ]; then
  record 4096 small
  small_marker=$marker small_session=$session
fi
record "$size" big

# ---- 4. measure ----
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- app server store transcript frontend style || echo ' + uncommitted changes'), server $bin/cmdop-inspector built $(date -r "$bin/cmdop-inspector" '+%F %T')"
node bench/browser/tail_visible.mjs --base "$base" --session "$session" --marker "$marker" --runs "$runs" \
  --ssr-runs "$ssr_runs" --cache "$cache" ${small:+--small-session "$small"} --chromium "$chromium" --viewport "$viewport" \
  --json "$out_dir/tail_visible.json" "${extra[@]}"
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg); samples: $out_dir/tail_visible.json"

if [ "$baseline_runs" -gt 0 ]; then
  echo
  echo "### Baseline: the same page for a 4 KiB transcript (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  node bench/browser/tail_visible.mjs --base "$base" --session "$small_session" --marker "$small_marker" \
    --runs "$baseline_runs" --ssr-runs 0 --server-runs 10 --cache "$cache" --chromium "$chromium" --viewport "$viewport" \
    --json "$out_dir/baseline.json" "${extra[@]}" 2>/dev/null
fi

# ---- 5. the browser's share: the same HTML from a static server, fewer rows ----
if [ "$rows_runs" -gt 0 ]; then
  echo
  echo "### The browser alone: the page's HTML served statically, by snapshot size (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  node bench/browser/html_rows.mjs --base "$base" --session "$session" --marker "$marker" --runs "$rows_runs" \
    --viewport "$viewport" --chromium "$chromium"
fi

# ---- 6. the server's steps, outside the server ----
if [ "$parts" = 1 ]; then
  echo
  echo "### Server steps of session_page outside the server (bench/browser/server_parts), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "$CARGO_TARGET_DIR/server-parts/release/tail-server-parts" "$log" 120 40 5 | tail -n +2
fi
