#!/usr/bin/env python3
"""The comparison of docs/results.md (the paper's Tables 1, 3 and 5 at the CPU budget), printed as
Markdown from the kept report.json and run-log.txt files under docs/results/:

    python3 scripts/comparison.py [docs/results]

Every number comes from a report.json (the row named in the table); the wall time from the
`Elapsed (wall clock)` line /usr/bin/time -v wrote into run-log.txt (training + evaluation)."""
import json, math, re, statistics, sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")
OOD = "tinyimagenet"
# MCL seed 0: the rerun with this session's binary when kept, else the session-5 run of the same config.
MCL0 = "cmp-mcl-seed0" if (ROOT / "cmp-mcl-seed0" / "report.json").exists() else "cpu-mcl-5ep-sync"

# Table 1: (method, run folder, row). A row is a report's SEI row ("1-way", "8-way wavg") or a
# post-hoc scorer ("msp", "odin", "mahalanobis", "rotation").
TABLE1 = [
    ("Baseline: MSP (Hendrycks & Gimpel 2016)", "cmp-ce-seed0", "msp"),
    ("ODIN (Liang et al. 2017)", "cmp-ce-seed0", "odin"),
    ("Mahalanobis, tied covariance (Lee et al. 2018)", "cmp-ce-seed0", "mahalanobis"),
    ("Auxiliary Rotation (Hendrycks et al. 2019)", "cmp-ce-rotation-seed0", "rotation"),
    ("SimCLR + SEI (with rotations; per-rank BN, session 1)", "cpu-simclr-5ep", "8-way wavg"),
    ("SimCLR, no rotations (the encoder of Table 3), 1-way", "cmp-simclr-norot-seed0", "1-way"),
    ("SupCon + SEI", "cpu-supcon-5ep-sync", "8-way wavg"),
    ("Auxiliary Rotation + SEI", "cmp-ce-rotation-seed0", "8-way wavg"),
    ("MCL + SEI", MCL0, "8-way wavg"),
]
# Table 3 (no SEI: the model's own score; the fine-tuned ones with MSP, the contrastive ones 1-way).
TABLE3 = [
    ("Baseline (w/o NT-Xent): CE, MSP", "cmp-ce-seed0", "msp"),
    ("SimCLR (no fine-tuning), 1-way", "cmp-simclr-norot-seed0", "1-way"),
    ("SimCLR (CE fine-tuned), MSP", "ft-ce-from-simclr", "msp"),
    ("SimCLR (joint fine-tuned), MSP", "ft-joint-from-simclr", "msp"),
    ("MCL (w/o SPA, w/o aux), 1-way", "cmp-mcl-no-spa-no-aux-seed0", "1-way"),
    ("MCL (w/o aux), 1-way", "cpu-mcl-no-aux-5ep-sync", "1-way"),
    ("MCL seed 2 (the encoder fine-tuned below), 1-way", "cmp-mcl-seed2", "1-way"),
    ("MCL seed 2, CE fine-tuned, MSP", "ft-ce-from-mcl", "msp"),
    ("MCL seed 0, 1-way", MCL0, "1-way"),
]
# Table 5: (model, folder, [rows]).
TABLE5 = [
    ("MCL w/o Aux", "cpu-mcl-no-aux-5ep-sync", ["1-way"]),
    ("MCL + DA", "cmp-mcl-da-seed0", ["1-way", "8-way wavg"]),
    ("MCL + Aux", MCL0, ["1-way", "8-way wavg"]),
]
# Seeds: (method, row, [folders]).
SEEDS = [
    ("MCL + SEI", "8-way wavg", [MCL0, "cmp-mcl-seed1", "cmp-mcl-seed2"]),
    ("MCL, 1-way", "1-way", [MCL0, "cmp-mcl-seed1", "cmp-mcl-seed2"]),
    ("Auxiliary Rotation (the strongest baseline)", "rotation", ["cmp-ce-rotation-seed0", "cmp-ce-rotation-seed1", "cmp-ce-rotation-seed2"]),
    ("Auxiliary Rotation + SEI", "8-way wavg", ["cmp-ce-rotation-seed0", "cmp-ce-rotation-seed1", "cmp-ce-rotation-seed2"]),
    ("ODIN (CE model)", "odin", ["cmp-ce-seed0", "cmp-ce-seed1", "cmp-ce-seed2"]),
    ("Baseline: MSP (CE model)", "msp", ["cmp-ce-seed0", "cmp-ce-seed1", "cmp-ce-seed2"]),
]
if MCL0 == "cmp-mcl-seed0" and (ROOT / "cpu-mcl-5ep-sync").exists():
    SEEDS.insert(1, ("MCL + SEI, with the session-5 seed-0 run", "8-way wavg",
                     ["cpu-mcl-5ep-sync", MCL0, "cmp-mcl-seed1", "cmp-mcl-seed2"]))
SEEDS = [s for s in SEEDS if all((ROOT / f / "report.json").exists() for f in s[2])]


def row(folder, name):
    if not (ROOT / folder / "report.json").exists():
        return None, None
    r = json.loads((ROOT / folder / "report.json").read_text())
    for x in r["rows"]:
        label = x.get("method") or (f"{x['views']}-way" if x["aggregation"] == "none" else f"{x['views']}-way {x['aggregation']}")
        if label == name or label.split(" ")[0] == name:
            m = next(o["metrics"] for o in x["ood"] if o["name"] == OOD)
            return x["accuracy"], m
    raise SystemExit(f"{folder}/report.json has no row '{name}'")


def wall(folder):
    log = ROOT / folder / "run-log.txt"
    if not log.exists():
        return "-"
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log.read_text())
    if not m:
        return "-"
    parts = [float(p) for p in m.group(1).split(":")]
    s = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return f"{s / 60:.1f} min"


def f2(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


print(f"### Table 1 at the CPU budget (OOD: {OOD})\n")
print("| Method | Run (`docs/results/`) | Row | Acc | AUROC | FPR@95 | AUPR-In | AUPR-Out | Wall time |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for method, folder, name in TABLE1:
    acc, m = row(folder, name)
    if m is None:
        print(f"| {method} | `{folder}` | {name} | not run | | | | | |")
        continue
    print(f"| {method} | `{folder}` | {name} | {f2(acc)} | {f2(m['auroc'])} | {f2(m['fpr95'])} | {f2(m['aupr_in'])} | {f2(m['aupr_out'])} | {wall(folder)} |")

print("\n### Seeds (mean ± sample standard deviation over the seeds)\n")
print("| Method | Row | Seeds | Acc | AUROC | FPR@95 | AUPR-In | per seed AUROC |")
print("|---|---|---:|---:|---:|---:|---:|---|")
for method, name, folders in SEEDS:
    vals = [row(f, name) for f in folders]
    def ms(k):
        xs = [v[0] if k == "acc" else v[1][k] for v in vals]
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f2(xs[0])
    per = " / ".join(f2(v[1]["auroc"]) for v in vals)
    print(f"| {method} | {name} | {len(folders)} | {ms('acc')} | {ms('auroc')} | {ms('fpr95')} | {ms('aupr_in')} | {per} |")

print(f"\n### Table 3 at the CPU budget (OOD: {OOD}; the paper's uses CIFAR-100)\n")
print("| Model | Run | Row | Acc | AUROC | FPR@95 | Wall time |")
print("|---|---|---|---:|---:|---:|---:|")
for method, folder, name in TABLE3:
    acc, m = row(folder, name)
    if m is None:
        print(f"| {method} | `{folder}` | {name} | not run | | | |")
        continue
    print(f"| {method} | `{folder}` | {name} | {f2(acc)} | {f2(m['auroc'])} | {f2(m['fpr95'])} | {wall(folder)} |")

print(f"\n### Table 5 at the CPU budget (OOD: {OOD})\n")
print("| Model | SEI | Run | Acc | AUROC | FPR@95 | Wall time |")
print("|---|---|---|---:|---:|---:|---:|")
for method, folder, names in TABLE5:
    for name in names:
        acc, m = row(folder, name)
        if m is None:
            print(f"| {method} | {'-' if name == '1-way' else name} | `{folder}` | not run | | | |")
            continue
        sei = "-" if name == "1-way" else name.replace("8-way ", "8-way ")
        print(f"| {method} | {sei} | `{folder}` | {f2(acc)} | {f2(m['auroc'])} | {f2(m['fpr95'])} | {wall(folder)} |")
