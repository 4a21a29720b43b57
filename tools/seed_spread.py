"""Mean and spread over experiments (seeds) of each claim's delta, from the claims stage's outputs.

    .venv/bin/python tools/seed_spread.py                          # the experiments of `dvc exp show` here
    dvc exp show --json > exps.json && .venv/bin/python tools/seed_spread.py --exp-show exps.json
    .venv/bin/python tools/seed_spread.py run_seed0/ run_seed1/ run_seed2/   # copies of a repo or claims.json files

Experiments come from `dvc exp show --json` (run here, or saved to a file); each one's
``metrics/claims.json`` is read from its commit (``git show <rev>:metrics/claims.json``: the claims stage's
outputs are committed files, not DVC metrics), or from the JSON itself where a metrics file of that path
is declared. The baseline and workspace rows are left out when experiments exist (they repeat one of
them), unless ``--all``. A directory argument means ``<dir>/metrics/claims.json``; a file argument is read
as is. Per claim it prints the experiments that measured it, mean, sample standard deviation, min and
max of the delta (points), and which experiments' own paired 95% interval (ci_low, ci_high in a full
claims file) lies above or below 0. Local only: git and DVC's local state, no network, no DVC remote.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

CLAIMS = "metrics/claims.json"


def git_show(rev: str, path: str) -> dict | None:
    """The JSON file ``path`` at commit ``rev`` of the repository here (None: not in that commit)."""
    r = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def summaries(data: dict) -> dict[str, dict]:
    """{claim: {"delta": d, "ci": (low, high) or None}} from a headline file (claim -> number) or a full
    one (claim -> {delta, ci_low, ci_high, ...}); claims without a numeric delta (not measured) are left out."""
    out = {}
    for name, v in data.items():
        ci = None
        if isinstance(v, dict):
            lo, hi = v.get("ci_low"), v.get("ci_high")
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)):
                ci = (float(lo), float(hi))
            v = v.get("delta")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = {"delta": float(v), "ci": ci}
    return out


def from_exp_show(exps: list[dict], path: str = CLAIMS, include_all: bool = False,
                  read_rev: Callable[[str, str], dict | None] = git_show) -> dict[str, dict[str, dict]]:
    """{experiment name or rev: :func:`summaries` of its claims} from the JSON of `dvc exp show --json`."""
    top, children = {}, {}

    def read(state: dict, into: dict) -> None:
        data = state.get("data") or {}
        rev = state.get("rev") or ""
        declared = ((data.get("metrics") or {}).get(path) or {}).get("data")
        found = declared if isinstance(declared, dict) else (read_rev(rev, path) if rev and rev != "workspace" else None)
        if isinstance(found, dict):
            into[state.get("name") or rev] = summaries(found)

    for state in exps:
        read(state, top)
        for rng in state.get("experiments") or []:
            # a queued, running or failed experiment has no results of its own: its rev is the stash
            # commit, which holds the baseline's claims file, and would count seed 0 twice
            run_state = (rng.get("executor") or {}).get("state")
            if run_state not in (None, "success"):
                name = rng.get("name") or next((c["name"] for c in rng.get("revs") or [] if c.get("name")), "?")
                print(f"seed_spread: skipping experiment {name} ({run_state})", file=sys.stderr)
                continue
            for child in rng.get("revs") or []:
                read(child, children)
    return {**top, **children} if include_all or not children else children


def from_paths(paths: list[str]) -> dict[str, dict[str, dict]]:
    """{path: :func:`summaries` of its claims} from run directories or claims files."""
    out = {}
    for p in map(Path, paths):
        f = p / CLAIMS if p.is_dir() else p
        if not f.is_file():
            raise SystemExit(f"seed_spread: {f} not found (a run's directory, or a claims JSON file)")
        out[str(p)] = summaries(json.loads(f.read_text(encoding="utf-8")))
    return out


def spread(runs: dict[str, dict[str, dict]]) -> list[dict]:
    """Per claim: runs measuring it, mean / sample sd / min / max of the delta, and the runs whose own 95%
    interval excludes 0 (``above`` / ``below``; runs without an interval count in neither)."""
    names = sorted({c for d in runs.values() for c in d})
    rows = []
    for c in names:
        got = {run: d[c] for run, d in runs.items() if c in d}
        xs = [e["delta"] for e in got.values()]
        above = sorted(run for run, e in got.items() if e["ci"] is not None and e["ci"][0] > 0)
        below = sorted(run for run, e in got.items() if e["ci"] is not None and e["ci"][1] < 0)
        rows.append({"claim": c, "n": len(xs), "mean": statistics.fmean(xs),
                     "sd": statistics.stdev(xs) if len(xs) > 1 else math.nan, "min": min(xs), "max": max(xs),
                     "with_ci": sum(e["ci"] is not None for e in got.values()), "above": above, "below": below})
    return rows


def markdown(rows: list[dict], n_runs: int) -> str:
    lines = [f"Claim deltas (points) over {n_runs} experiments: mean, sample sd, range, and the experiments whose"
             " own paired 95% interval lies above / below 0 (of those that carry an interval)", "",
             "| claim | runs | mean | sd | min | max | CI above 0 | CI below 0 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sd = "-" if math.isnan(r["sd"]) else f"{r['sd']:.2f}"
        side = [f"{len(r[k])}/{r['with_ci']}" + (f" ({', '.join(r[k])})" if r[k] else "") if r["with_ci"] else "-"
                for k in ("above", "below")]
        lines.append(f"| {r['claim']} | {r['n']} | {r['mean']:+.2f} | {sd} | {r['min']:+.2f} | {r['max']:+.2f} "
                     f"| {side[0]} | {side[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="run directories (<dir>/metrics/claims.json) or claims JSON files")
    ap.add_argument("--exp-show", help="the JSON `dvc exp show --json` printed ('-': stdin)")
    ap.add_argument("--path", default=CLAIMS, help=f"the claims file in each experiment (default {CLAIMS})")
    ap.add_argument("--all", action="store_true", help="keep the baseline and workspace rows too")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of markdown")
    args = ap.parse_args(argv)
    if args.paths and args.exp_show:
        ap.error("give run paths or --exp-show, not both")
    if args.paths:
        runs = from_paths(args.paths)
    else:
        if args.exp_show == "-":
            text = sys.stdin.read()
        elif args.exp_show:
            text = Path(args.exp_show).read_text(encoding="utf-8")
        else:
            text = subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
        runs = from_exp_show(json.loads(text), args.path, args.all)
    if not runs:
        print(f"seed_spread: no experiment has {args.path}", file=sys.stderr)
        return 1
    rows = spread(runs)
    print(json.dumps(rows, indent=1) if args.json else markdown(rows, len(runs)), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
