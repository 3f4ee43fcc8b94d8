#!/usr/bin/env bash
# Import and verify speed of the `activitylog` tool on N messages of about 180 bytes (default
# 1,000,000), beside the read-speed peers in the same run: `cat FILE > /dev/null` and `wc -l`
# of the same input, `cp` + `sync` of it (the disk-write peer of import), and `cat` of the
# store's files for verify.
#
#   benches/archive.sh [N]        # WORK=/some/dir to keep the files elsewhere than $TMPDIR
#
# Files are read from the page cache (each is read once before it is timed), so the peers
# measure memory-speed reading, the upper bound for the tool.
set -euo pipefail

N=${1:-1000000}

# Arithmetic without bc.
calc() { awk "BEGIN { print $1 }"; }

cd "$(dirname "$0")/.."
cargo build --release --quiet --bin activitylog
BIN=$PWD/target/release/activitylog
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK/archive-bench"' EXIT
DIR=$WORK/archive-bench
rm -rf "$DIR" && mkdir -p "$DIR"
FILE=$DIR/1111111.jl

# Messages like a crawler's job events, each with the `_ts` that import keeps.
awk -v n="$N" 'BEGIN {
  for (i = 0; i < n; i++)
    printf "{\"event\":\"job:completed\",\"job\":\"1111111/%d/%d\",\"spider\":\"books.toscrape.com\",\"user\":\"someone@example.com\",\"items\":%d,\"pages\":%d,\"errors\":%d,\"state\":\"finished\",\"_ts\":%.0f}\n",
      i % 97, i, (i * 7) % 100000, i % 500, i % 3, 1700000000000 + i
}' > "$FILE"
BYTES=$(stat -c %s "$FILE")
printf 'input: %d messages, %d bytes (%.1f bytes each)\n' "$N" "$BYTES" "$(calc "$BYTES / $N")"

# Runs "$@" and prints the wall-clock seconds it took.
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null
  end=$(date +%s.%N)
  calc "$end - $start"
}

# One result line: name, seconds, bytes, and the peer's seconds for the ratio.
line() {
  printf '%-28s %7.3f s  %9.0f msg/s  %7.1f MB/s' "$1" "$2" "$(calc "$N / $2")" \
    "$(calc "$3 / $2 / 1000000")"
  if [ -n "${4:-}" ]; then
    printf '  %5.1fx the time of %s' "$(calc "$2 / $4")" "$5"
  fi
  echo
}

cat "$FILE" > /dev/null # into the page cache
sync # no writeback of the input left to compete with what is timed
CAT=$(seconds cat "$FILE")
WC=$(seconds wc -l "$FILE")
# The write peer: the same bytes copied to a new file and flushed to disk.
COPY=$(seconds sh -c "cp '$FILE' '$DIR/copy.jl' && sync '$DIR/copy.jl'")
rm -f "$DIR/copy.jl"
sync
IMPORT=$(seconds "$BIN" import --dir "$DIR/store" "$FILE")
STORE_BYTES=$(du -sb "$DIR/store" | cut -f1)
cat "$DIR"/store/projects/*/* > /dev/null
CAT_STORE=$(seconds sh -c "cat '$DIR'/store/projects/*/*")
VERIFY=$(seconds "$BIN" verify --dir "$DIR/store")

echo "store: $STORE_BYTES bytes on disk"
line "cat FILE > /dev/null" "$CAT" "$BYTES"
line "wc -l FILE" "$WC" "$BYTES" "$CAT" "cat"
line "cp FILE + sync (disk write)" "$COPY" "$BYTES" "$CAT" "cat"
line "activitylog import" "$IMPORT" "$BYTES" "$CAT" "cat"
printf '%-28s %5.1fx the time of cp + sync\n' "" "$(calc "$IMPORT / $COPY")"
line "cat STORE > /dev/null" "$CAT_STORE" "$STORE_BYTES"
line "activitylog verify" "$VERIFY" "$STORE_BYTES" "$CAT_STORE" "cat STORE"
printf '%-28s %5.1fx the time of wc -l FILE\n' "" "$(calc "$VERIFY / $WC")"
