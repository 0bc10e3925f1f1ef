"""python -m netstack.packetdrill [--json FILE] [--strict] [-v] SCRIPT.pkt..."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .engine import RELAXATIONS, run_script


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netstack.packetdrill",
                                 description="Run packetdrill scripts against the native stack (virtual clock).",
                                 epilog=RELAXATIONS, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scripts", nargs="+", metavar="SCRIPT.pkt")
    ap.add_argument("--json", metavar="FILE", help="write per-script results as JSON")
    ap.add_argument("--strict", action="store_true", help="compare everything (see below)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds of wall time per script")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the reason of every result")
    a = ap.parse_args(argv)
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    rows = []
    for path in a.scripts:
        t0 = time.monotonic()
        try:
            r = run_script(path, a.strict, a.time_limit)
        except OSError as e:
            from .engine import Result
            r = Result("FAIL", 0, f"cannot read: {e.strerror}")
        counts[r.status] += 1
        rows.append({"script": path, "status": r.status, "line": r.line, "message": r.message,
                     "seconds": round(time.monotonic() - t0, 3)})
        if r.status == "PASS":
            print(f"PASS {path}" + (f"  ({rows[-1]['seconds']} s)" if a.verbose else ""))
        elif r.status == "SKIP":
            print(f"SKIP {path}: {r.message}")
        else:
            print(f"FAIL {path}:{r.line}: {r.message}")
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": rows, "passed": counts["PASS"], "failed": counts["FAIL"],
                       "skipped": counts["SKIP"]}, f, indent=1)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
