#!/usr/bin/env bash
# activitylog side by side with SQLite and the limits (issue 7), then the README's chart.
#
#   bash benches/compare.sh               # full scale: 2,000,000 messages, 80 s of runs plus the build
#   bash benches/compare.sh --quick       # a small, fast run (what CI does, with fewer messages)
#
# Writes target/compare/results.json and target/compare/results.md, and docs/compare.png.
# The data lives under target/compare-data (on the real disk: fsyncs must be real).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p activitylog-compare
mkdir -p target/compare
./target/release/activitylog-compare "$@" --out target/compare/results.json | tee target/compare/results.md
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check matplotlib
.venv/bin/python compare/chart.py target/compare/results.json docs/compare.png
echo "chart: docs/compare.png"
