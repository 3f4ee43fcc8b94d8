"""Draws the comparison chart from the benchmark's JSON output.

    python3 compare/chart.py target/compare/results.json docs/compare.png

Left: how many times better activitylog is than SQLite on each workload (log scale), with the
issue's target as a tick. Right: how many times slower than the limit it is (1 = the limit).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    with open(src) as f:
        run = json.load(f)
    rows = [w for w in run["workloads"] if w["vs_sqlite"] is not None]
    rows.reverse()
    labels = [f'{w["id"]} {w["title"]}' for w in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.6), sharey=True)
    ys = range(len(rows))

    adv = [w["vs_sqlite"] for w in rows]
    colors = ["#2a7" if a >= (w["vs_sqlite_target"] or 1) else "#d63" for a, w in zip(adv, rows)]
    left.barh(ys, adv, color=colors)
    for y, w in zip(ys, rows):
        if w["vs_sqlite_target"]:
            left.plot([w["vs_sqlite_target"]] * 2, [y - 0.4, y + 0.4], color="black", lw=2)
        left.text(w["vs_sqlite"], y, f' {w["vs_sqlite"]:.1f}×', va="center", fontsize=8)
    left.set_xscale("log")
    left.axvline(1, color="grey", lw=0.8)
    left.set_yticks(list(ys))
    left.set_yticklabels(labels, fontsize=8)
    left.set_xlabel("activitylog ÷ SQLite (× better; black tick = target)")

    slow = [w["slower_than_limit"] for w in rows]
    for y, w, s in zip(ys, rows, slow):
        if s is None:
            continue
        target = w["vs_limit_target"]
        right.barh(y, s, color="#2a7" if target and s <= target else ("#d63" if target else "#89a"))
        if target:
            right.plot([target] * 2, [y - 0.4, y + 0.4], color="black", lw=2)
        right.text(s, y, f" {s:.2f}×", va="center", fontsize=8)
    right.axvline(1, color="grey", lw=0.8)
    right.set_xlabel("times slower than the limit (1 = raw writes / memrchr in memory)")
    scale = "quick" if run["quick"] else "full"
    fig.suptitle(
        f'activitylog vs SQLite vs the limit — {run["messages"]:,} messages, '
        f'{run["projects"]} projects ({scale} run)',
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
