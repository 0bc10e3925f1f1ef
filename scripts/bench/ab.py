"""Interleaved A/B of the sans-IO core: an old tree against the new one,
alternating in one run, medians of the rounds (this VM's speed drifts; an
alternating run spreads a slow phase over both sides).

    python scripts/bench/ab.py [--base REV] [--new REV] [--rounds 7] [--n 4000]

Both trees are git worktrees (of --base, default HEAD~1, and of --new, default
HEAD: committed code only, so edits made while it runs do not leak in) in a
temporary folder; the probe (this tree's scripts/bench/core_probe.py) imports
the core from each in turn. CPU time per unit: us per segment, per request,
per connection (each the best of 3 in a probe run); the median of each side,
and the median of the per-round ratios new/old (below 1: faster), which pairs
the two sides of a round and so cancels most of the VM's drift.
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
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=4000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ab-")
    trees = {"old": os.path.join(tmp, "old"), "new": os.path.join(tmp, "new")}
    try:
        for side, rev in (("old", a.base), ("new", a.new)):
            subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", trees[side], rev], check=True,
                           capture_output=True)
            # the probe loads core.py next to itself: both trees get this one
            shutil.copy(os.path.join(HERE, "core.py"), os.path.join(trees[side], "scripts", "bench", "core.py"))
        res = {"old": [], "new": []}
        for r in range(a.rounds):
            for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                res[side].append(probe(trees[side], a.n))
        print(f"interleaved A/B, {a.rounds} rounds (CPU us per unit); old = {a.base}, new = {a.new}")
        print(f"{'unit':10} {'old':>9} {'new':>9} {'new/old (median of per-round ratios)':>38}")
        for k in ("segment", "request", "conn"):
            o = statistics.median(x[k] for x in res["old"])
            n = statistics.median(x[k] for x in res["new"])
            ratio = statistics.median(y[k] / x[k] for x, y in zip(res["old"], res["new"]))
            print(f"{k:10} {o:9.2f} {n:9.2f} {ratio:38.3f}")
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
