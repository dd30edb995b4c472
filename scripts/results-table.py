#!/usr/bin/env python3
"""Prints the SEI table of docs/results.md (markdown) from a report.json written by
`mcl-dist train` / `mcl-dist evaluate`:  python3 scripts/results-table.py runs/cpu-mcl/report.json"""
import json, sys

r = json.load(open(sys.argv[1]))
ood = sys.argv[2] if len(sys.argv) > 2 else r["ood_sets"][0]
print("| SEI | Agg | Acc | AUROC | FPR@95 | AUPR-In | AUPR-Out |")
print("|---|---|---:|---:|---:|---:|---:|")
for row in r["rows"]:
    if "method" in row:  # the post-hoc scorers' rows: see scripts/comparison.py
        continue
    m = next(o["metrics"] for o in row["ood"] if o["name"] == ood)
    agg = "-" if row["aggregation"] == "none" else row["aggregation"]
    print(f"| {row['views']}-way | {agg} | {row['accuracy']:.2f} | {m['auroc']:.2f} | {m['fpr95']:.2f} | {m['aupr_in']:.2f} | {m['aupr_out']:.2f} |")
