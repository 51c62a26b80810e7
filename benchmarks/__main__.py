"""Runs the main() of every benchmarks/bench_*.py module in turn.

python -m benchmarks            # all of them
python -m benchmarks codec      # only modules whose name contains "codec"
python -m benchmarks realkafka --version 4.2.2   # options from the first "-..." on go to main()
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Names first, then options ("-..." and whatever follows) for the chosen modules' main(argv).
    split = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    filters, options = args[:split], args[split:]
    names = sorted(p.stem for p in Path(__file__).resolve().parent.glob("bench_*.py"))
    if filters:
        names = [name for name in names if any(f in name for f in filters)]
    if not names:
        print("no benchmark matches", filters, file=sys.stderr)
        return 1
    for name in names:
        print(f"=== benchmarks.{name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        if options:
            module.main(options)
        else:
            module.main()
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
