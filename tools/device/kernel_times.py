"""Summarise ncu's per-kernel CSV: GPU time per kernel family (name up to the context hash)."""
import csv
import re
import sys
from collections import defaultdict

path, label = sys.argv[1:3]
rows = [r for r in csv.reader(l for l in open(path, errors="replace") if l.startswith('"'))]
if not rows:
    print(f"\n(no ncu summary for {label}: {open(path, errors='replace').read()[-300:]!r})")
    sys.exit(0)
head = rows[0]
col = {name: i for i, name in enumerate(head)}
total = defaultdict(float)
count = defaultdict(int)
for r in rows[1:]:
    try:
        name = r[col["Kernel Name"]]
        if r[col["Metric Name"]] != "gpu__time_duration.sum":
            continue
        scale = {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(r[col["Metric Unit"]], 1) if "Metric Unit" in col else 1
        avg = float(r[col["Average"]].replace(",", "")) * scale
        n = int(r[col["Invocations"]].replace(",", ""))
    except (KeyError, ValueError, IndexError):
        continue
    family = re.sub(r"_[0-9a-f]{8}$", "", name.split("(")[0])
    total[family] += avg * n
    count[family] += n
all_ns = sum(total.values()) or 1.0
print(f"\n### GPU time by kernel family, {label} (ncu, short bench run)\n| kernel | launches | time (us) | share |\n|---|---|---|---|")
for fam, t in sorted(total.items(), key=lambda kv: -kv[1])[:12]:
    print(f"| {fam} | {count[fam]} | {t / 1e3:.0f} | {100 * t / all_ns:.1f}% |")
