"""Interleaved A/B of the sans-IO core: an old tree against the new one,
alternating in one run, medians of the rounds (this VM's speed drifts; an
alternating run spreads a slow phase over both sides).

    python scripts/bench/ab.py [--base REV] [--rounds 7] [--n 4000]

The old tree is a git worktree of REV (default HEAD~1) in a temporary folder;
the probe (scripts/bench/core_probe.py of the new tree) imports the core from
each tree in turn. CPU time per unit: us per segment, per request, per
connection; the ratio new/old (below 1: faster).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def probe(tree, n):
    env = dict(os.environ, PROBE_TREE=tree, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, os.path.join(HERE, "core_probe.py"), "--n", str(n)], env=env,
                         check=True, capture_output=True, text=True, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="HEAD~1")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=4000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ab-")
    old = os.path.join(tmp, "old")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old, a.base], check=True,
                   capture_output=True)
    try:
        # the probe loads core.py next to itself: give the old tree the same one
        shutil.copy(os.path.join(HERE, "core.py"), os.path.join(old, "scripts", "bench", "core.py"))
        res = {"old": [], "new": []}
        for r in range(a.rounds):
            for side, tree in (("old", old), ("new", ROOT)) if r % 2 == 0 else (("new", ROOT), ("old", old)):
                res[side].append(probe(tree, a.n))
        print(f"interleaved A/B, {a.rounds} rounds, medians (CPU us per unit); old = {a.base}")
        print(f"{'unit':10} {'old':>9} {'new':>9} {'new/old':>8}")
        for k in ("segment", "request", "conn"):
            o = statistics.median(x[k] for x in res["old"])
            n = statistics.median(x[k] for x in res["new"])
            print(f"{k:10} {o:9.2f} {n:9.2f} {n / o:8.3f}")
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
