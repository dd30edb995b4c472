#!/usr/bin/env python3
"""Prints the summary table of docs/results.md from kept runs: one row per LABEL=DIR argument
(DIR under docs/results/), with the 8-way wavg SEI row (1-way when the run has no SEI), and the
training time and images/s from DIR/run-log.txt when it was kept.
  python3 scripts/results-summary.py "MCL official, 15 epochs=cpu-mcl-15ep" ..."""
import json, os, re, sys

print("| model | epochs | Acc | AUROC | FPR@95 | AUPR-In | AUPR-Out | training | report |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for arg in sys.argv[1:]:
    label, d = arg.rsplit("=", 1)
    base = os.path.join("docs/results", d)
    r = json.load(open(os.path.join(base, "report.json")))
    rows = {(x["views"], x["aggregation"]): x for x in r["rows"] if "method" not in x}  # SEI rows only
    row = rows.get((8, "wavg")) or rows[(1, "none")]
    m = row["ood"][0]["metrics"]
    way = "" if row["views"] == 8 else " (1-way)"
    epochs = re.search(r"epochs: (\d+)", r["config"]).group(1)
    train = "-"
    log = os.path.join(base, "run-log.txt")
    if os.path.exists(log):
        t = re.search(r"training done: (\d+) steps in ([\d.]+) s \(([\d.]+) images/s\)", open(log).read())
        if t:
            train = f"{float(t.group(2)):,.0f} s, {float(t.group(3)):.0f} img/s"
    print(f"| {label}{way} | {epochs} | {row['accuracy']:.2f} | {m['auroc']:.2f} | {m['fpr95']:.2f} | "
          f"{m['aupr_in']:.2f} | {m['aupr_out']:.2f} | {train} | `{d}/` |")
