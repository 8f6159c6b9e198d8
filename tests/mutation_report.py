"""Summarise a mutmut run (`make mutation`) into results/mutation.json.

Reads the exit codes mutmut left in mutants/hpe/*.meta for the mutants matching the given name patterns, and
tests/mutation_equivalent.toml (mutant name -> the one-line reason it cannot change behaviour).  A mutant is
killed when its tests failed or it timed out (mutmut's reading of the exit code); survived when they passed.  The killed share is over
the non-equivalent mutants.

    python tests/mutation_report.py --seconds S --out results/mutation.json PATTERN...
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def outcome(code) -> str:
    """mutmut's own reading of an exit code: killed, survived, timeout, no tests, not checked, ..."""
    from mutmut.stats import status_by_exit_code
    return status_by_exit_code[code]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patterns", nargs="+")
    ap.add_argument("--seconds", type=float, required=True, help="wall time of the mutmut run")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "mutation.json")
    ap.add_argument("--rechecked", type=Path, help="JSON {mutant: {killed, by}}: survivors of this run re-run by "
                                                   "hand against tests written after it started")
    a = ap.parse_args(argv)
    codes = {}
    for meta in sorted((ROOT / "mutants").rglob("*.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    names = sorted(n for n in codes if any(fnmatch.fnmatchcase(n, p) for p in a.patterns))
    empty = [p for p in a.patterns if not any(fnmatch.fnmatchcase(n, p) for n in codes)]
    if codes and empty:  # a renamed function: its mutants were never run, and a report would not say so
        print(f"no mutants match {', '.join(empty)}: a function renamed? fix the pattern (Makefile MUTANTS)",
              file=sys.stderr)
        return 2
    if not names:
        print(f"no mutants match {a.patterns} in {ROOT / 'mutants'}: run mutmut first", file=sys.stderr)
        return 2
    equivalent = tomllib.loads((ROOT / "tests" / "mutation_equivalent.toml").read_text())
    unknown = sorted(set(equivalent) - set(names))
    result = {n: outcome(codes[n]) for n in names}
    rechecked = json.loads(a.rechecked.read_text()) if a.rechecked else {}
    killed_later = {}
    for n in names:
        if n in equivalent and result[n] == "survived":
            result[n] = "equivalent"
        elif result[n] in ("survived", "no tests") and rechecked.get(n, {}).get("killed"):
            result[n], killed_later[n] = "killed", rechecked[n]["by"]
    count = Counter(result.values())
    killed = count["killed"] + count["timeout"]
    scored = killed + count["survived"] + count["no tests"]
    by_module = {}
    for n, r in result.items():
        mod = n.split(".x")[0]
        by_module.setdefault(mod, Counter())[r] += 1
    report = {
        "tool": "mutmut",
        "patterns": a.patterns,
        "seconds": round(a.seconds),
        "mutants": len(names),
        "killed": count["killed"],
        "timeout": count["timeout"],
        "survived": count["survived"],
        "equivalent": count["equivalent"],
        "no_tests": count["no tests"],
        "not_checked": count["not checked"],
        "other": {k: v for k, v in count.items() if k not in ("killed", "timeout", "survived", "equivalent",
                                                              "no tests", "not checked")},
        "killed_share_of_non_equivalent": round(killed / scored, 4) if scored else None,
        "by_module": {m: dict(c) for m, c in sorted(by_module.items())},
        "killed_after_the_run": killed_later,
        "survivors": [n for n, r in result.items() if r == "survived"],
        "equivalents": {n: equivalent[n] for n, r in result.items() if r == "equivalent"},
        "equivalent_entries_not_in_this_run": unknown,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(names)} mutants: {killed} killed ({count['timeout']} by timeout), {count['survived']} survived, "
          f"{count['equivalent']} equivalent, {count['no tests']} without tests, {count['not checked']} not checked; "
          f"killed {100 * killed / max(scored, 1):.1f}% of the non-equivalent, in {a.seconds / 60:.1f} min -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
