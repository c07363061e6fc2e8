"""The command line of a benchmark of people talking to a worker."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def people_options(prog: str, doc: str | None, *, quick: str, full: str) -> argparse.Namespace:
    """``--out``, ``--quick``, ``--rtt-ms`` and ``--people``: the N of people at once, given
    as ``1,2,4``, or ``quick``/``full`` when not given."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help=f"N = {quick} only")
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--people", default=None, help=f"comma-separated N, e.g. {full}")
    args = parser.parse_args()
    args.people = args.people or (quick if args.quick else full)
    return args
