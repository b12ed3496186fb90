"""One markdown row: rocmforge's bench JSON beside llama-bench's JSON for the same model."""
import json
import sys

name, rf_path, lc_path = sys.argv[1:4]
try:
    rf = json.load(open(rf_path))
    ours = {r["test"]: r["median"] for r in rf["results"]}
    roof = rf.get("roofline_tok_s")
except Exception as e:  # a failed run still gets its row
    ours, roof = {}, None
    print(f"<!-- rocmforge {name}: {e} -->")
try:
    lc = json.load(open(lc_path))
    theirs = {}
    for r in lc:
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        theirs[test] = r["avg_ts"] if "samples_ts" not in r else sorted(r["samples_ts"])[len(r["samples_ts"]) // 2]
except Exception as e:
    theirs = {}
    print(f"<!-- llama.cpp {name}: {e} -->")


def cell(d, k):
    return f"{d[k]:.1f}" if k in d else "-"


def ratio(k):
    return f"{ours[k] / theirs[k]:.2f}x" if k in ours and k in theirs and theirs[k] else "-"


share = f"{100 * ours['tg128'] / roof:.0f}% of {roof:.0f}" if roof and "tg128" in ours else "-"
print(f"| {name} | {cell(ours, 'pp512')} | {cell(theirs, 'pp512')} | {ratio('pp512')} | "
      f"{cell(ours, 'tg128')} | {cell(theirs, 'tg128')} | {ratio('tg128')} | {share} |")
