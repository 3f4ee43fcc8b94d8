#!/usr/bin/env bash
# Load benchmark of `activitylog serve` with wrk, 64 connections, at each durability level:
#   GET  /activity/1111111?count=20   the newest 20 of a 1,000,000-message project
#   POST /activity/2222222            10 messages per request (benches/load-post.lua)
#
#   benches/load.sh                    # from the repository root (or anywhere: it cds there)
#   DURATION=30s benches/load.sh       # longer runs; LEVELS="sync" for one level
#
# Environment: DURATION (per workload, default 10s), WARMUP (default 2s, unmeasured),
# CONNECTIONS (64), THREADS (2), LEVELS ("written sync"), MESSAGES (1000000), CHUNK (50000).
# The prepared store is cached in target/tmp/load-data; each level serves a fresh copy of it.
# Loopback only. Exits non-zero if a check fails or any request is answered with an error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
LEVELS=${LEVELS:-written sync}
MESSAGES=${MESSAGES:-1000000}
CHUNK=${CHUNK:-50000}
GET_PROJECT=1111111
POST_PROJECT=2222222
CHECK_PROJECT=3333333

BIN=$ROOT/target/release/activitylog
DATA=$ROOT/target/tmp/load-data
STORE=$DATA/store-v1-$MESSAGES
RUN_DIR=$DATA/run
RESULTS=$DATA/results.tsv

die() {
    echo "load.sh: $*" >&2
    exit 1
}

SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools -----------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    echo "installing wrk from Debian" >&2
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

timeout 1200 cargo build --release --quiet

# --- the prepared store: one project of $MESSAGES messages -----------------------------------
if [[ ! -f $STORE.ok ]]; then
    echo "preparing $STORE: $MESSAGES messages in batches of $CHUNK" >&2
    rm -rf "$STORE" "$STORE.ok" "$DATA/gen"
    mkdir -p "$DATA/gen"
    # Realistic Scrapinghub activity events, 150-200 bytes, deterministic.
    timeout 300 python3 - "$DATA/gen" "$MESSAGES" "$CHUNK" "$GET_PROJECT" <<'PY'
import json, random, sys
out, total, chunk, project = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(42)
spiders = ["quotes", "books.toscrape.com", "amazon-products", "news-crawler", "jobs-board",
           "real-estate-listings", "price-monitor"]
users = ["jobrunner", "john", "maria.garcia", "periodic-scheduler", "ci-deploy"]
events = ["job:scheduled", "job:started", "job:completed", "job:cancelled", "job:deleted",
          "spider:deployed"]
weights = [30, 30, 28, 5, 5, 2]
sizes, newest = 0, ""
for c in range((total + chunk - 1) // chunk):
    with open(f"{out}/chunk-{c:04d}.jsonl", "w") as f:
        for i in range(c * chunk, min(total, (c + 1) * chunk)):
            ev = rng.choices(events, weights)[0]
            spider = rng.choice(spiders)
            m = {"event": ev, "job": f"{project}/{spiders.index(spider) + 1}/{i // 3 + 1}",
                 "user": rng.choice(users), "spider": spider}
            if ev == "job:scheduled":
                m.update(priority=rng.randint(0, 4), units=rng.choice([1, 1, 2, 4]),
                         tags=rng.sample(["daily", "prod", "retry", "eu", "us"], 2))
            elif ev == "job:started":
                m.update(version=f"2.{rng.randint(0, 9)}.{rng.randint(0, 30)}-{rng.getrandbits(28):07x}",
                         host=f"worker-{rng.randint(1, 64):02d}.eu-west-1")
            elif ev in ("job:completed", "job:cancelled"):
                m.update(close_reason="finished" if ev == "job:completed" else "cancelled",
                         items=rng.randint(0, 100000), requests=rng.randint(1, 200000),
                         errors=rng.choice([0, 0, 0, rng.randint(1, 50)]),
                         elapsed=rng.randint(10, 86400))
            else:
                m.update(reason=rng.choice(["manual", "retention", "redeploy"]),
                         note="requested from the dashboard")
            m["seq"] = i + 1
            line = json.dumps(m, separators=(",", ":"))
            sizes += len(line)
            newest = line
            f.write(line + "\n")
with open(f"{out}/newest.json", "w") as f:
    f.write(newest + "\n")
print(f"generated {total} messages, {sizes / total:.0f} bytes on average", file=sys.stderr)
PY
    started=$SECONDS
    for file in "$DATA"/gen/chunk-*.jsonl; do
        timeout 120 "$BIN" append --log warn --dir "$STORE" "$GET_PROJECT" "$file"
    done
    echo "loaded in $((SECONDS - started)) s" >&2
    mv "$DATA/gen/newest.json" "$STORE.newest"
    rm -rf "$DATA/gen"
    touch "$STORE.ok"
fi
[[ -f $STORE.newest ]] || die "$STORE.newest is missing; delete $STORE.ok to rebuild"
echo "store: $STORE ($(du -sh "$STORE" | cut -f1))" >&2

# --- helpers ---------------------------------------------------------------------------------
# Starts the server on a fresh copy of the store at $1; sets SERVER_PID and BASE.
start_server() {
    local level=$1 port=
    rm -rf "$RUN_DIR"
    cp -a --reflink=auto "$STORE" "$RUN_DIR"
    "$BIN" serve --log warn --dir "$RUN_DIR" --listen "127.0.0.1:${PORT:-0}" \
        --durability "$level" 2>"$DATA/server-$level.log" &
    SERVER_PID=$!
    # The server prints the address it bound: port 0 lets the kernel pick a free one.
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(cat "$DATA/server-$level.log")"
        port=$(sed -n 's|.*serving the Activity API on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' \
            "$DATA/server-$level.log")
        if [[ -n $port ]] && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/activity/$GET_PROJECT?count=1"; then
            BASE=http://127.0.0.1:$port
            return
        fi
        sleep 0.1
    done
    die "the server did not answer within 10 s: $(cat "$DATA/server-$level.log")"
}

stop_server() {
    kill -TERM "$SERVER_PID"
    for _ in $(seq 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        die "the server did not stop within 30 s of SIGTERM"
    fi
    wait "$SERVER_PID" || die "the server exited with status $?: $(cat "$DATA/server-$1.log")"
    SERVER_PID=
}

# A fast wrong answer must fail the benchmark: check the answers before measuring.
check_answers() {
    local body lines first
    body=$(curl -fsS --max-time 10 "$BASE/activity/$GET_PROJECT?count=20")
    lines=$(printf '%s\n' "$body" | wc -l)
    [[ $lines -eq 20 ]] || die "GET ?count=20 answered $lines lines, not 20"
    first=$(printf '%s\n' "$body" | head -n 1)
    [[ $first == "$(cat "$STORE.newest")" ]] ||
        die "GET ?count=20 did not start with the newest message: $first"
    curl -fsS --max-time 10 -o /dev/null --data-binary $'{"n":1}\n{"n":2}' "$BASE/activity/$CHECK_PROJECT"
    body=$(curl -fsS --max-time 10 "$BASE/activity/$CHECK_PROJECT?count=5")
    [[ $body == $'{"n":2}\n{"n":1}' ]] || die "a POST then GET answered: $body"
    # The POST workload itself (its Lua script), once, must be answered 200.
    body=$(timeout 10 wrk -t1 -c1 -d1s -s benches/load-post.lua "$BASE/activity/$CHECK_PROJECT" 2>&1) ||
        die "wrk failed: $body"
    if grep -q "Non-2xx" <<<"$body"; then die "the POST workload is refused: $body"; fi
}

# Converts a wrk latency ("727.00us", "1.04ms", "2.00s", "1.00m") to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

# Runs wrk; appends "level workload req/s p50 p99 msg/s errors" to $RESULTS and sets REQUESTS
# to the number of requests wrk saw completed.
REQUESTS=0
measure() {
    local level=$1 workload=$2 url=$3 per_request=$4 out rps p50 p99 errors
    shift 4
    local limit=$((${DURATION%s} + 30))
    timeout "$((${WARMUP%s} + 30))" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$@" "$url" >/dev/null
    out=$(timeout "$limit" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
    printf '%s\n' "--- $level $workload" "$out" >>"$DATA/wrk.log"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10}
        END {print n + 0}' <<<"$out")
    REQUESTS=$(awk '/requests in/ {print $1}' <<<"$out")
    [[ -n $rps && -n $REQUESTS ]] || die "cannot parse wrk's output: $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$level" "$workload" "$rps" "$p50" "$p99" \
        "$(awk -v r="$rps" -v k="$per_request" 'BEGIN {if (k > 0) printf "%.0f", r * k; else print "-"}')" \
        "$errors" >>"$RESULTS"
    echo "  $workload: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errors errors" >&2
}

# --- the runs --------------------------------------------------------------------------------
[[ $DURATION =~ ^[0-9]+s$ && $WARMUP =~ ^[0-9]+s$ ]] || die "DURATION and WARMUP are seconds, like 10s"
: >"$RESULTS"
: >"$DATA/wrk.log"
for level in $LEVELS; do
    echo "durability $level:" >&2
    start_server "$level"
    check_answers
    measure "$level" "GET ?count=20" "$BASE/activity/$GET_PROJECT?count=20" 0
    measure "$level" "POST 10 msgs" "$BASE/activity/$POST_PROJECT" 10 -s benches/load-post.lua
    stop_server "$level"
    # Every acknowledged POST must be stored (warm-up requests and ones wrk did not wait for
    # add more): the store, read-only, holds at least 10 x the measured requests.
    stored=$(timeout 60 "$BIN" stats --log warn --dir "$RUN_DIR" -p "$POST_PROJECT" --json |
        sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
    [[ -n $stored && $stored -ge $((10 * REQUESTS)) ]] ||
        die "project $POST_PROJECT holds ${stored:-no} messages after $REQUESTS POSTs of 10"
    echo "  stored: $stored messages in project $POST_PROJECT (>= 10 x $REQUESTS)" >&2
done

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $(nproc) cores, $(uname -r); full output in $DATA/wrk.log"
awk -F'\t' 'BEGIN {
        printf "| %-10s | %-15s | %10s | %9s | %9s | %10s | %6s |\n", "durability", "workload", "requests/s", "p50 ms", "p99 ms", "messages/s", "errors"
        printf "|------------|-----------------|-----------:|----------:|----------:|-----------:|-------:|\n" }
    { printf "| %-10s | %-15s | %10.0f | %9s | %9s | %10s | %6s |\n", $1, $2, $3, $4, $5, $6, $7; e += $7 }
    END { exit e > 0 }' "$RESULTS" || die "some requests failed (see the errors column and $DATA/wrk.log)"
