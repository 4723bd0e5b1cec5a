"""`make chaos`: the full chaos run (tests/chaos_harness.py), its reconciliation printed.

    .venv/bin/python tests/chaos_run.py [--invoices 500] [--kills 3] [--seed 11] [--json]

Exit status 0 when nothing was duplicated, missing or different; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # conftest's process_env, as pytest has it

from chaos_harness import ChaosPlan, run_chaos


def main() -> int:
    defaults = ChaosPlan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=defaults.invoices)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--metered", type=int, default=defaults.metered_per_marketplace)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--window", type=float, default=defaults.chaos_window)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # Retried attempts are the point of the run, not news: the report tells the outcome.
    logging.basicConfig(level=logging.ERROR)
    plan = dataclasses.replace(
        defaults,
        invoices=args.invoices,
        kills=args.kills,
        metered_per_marketplace=args.metered,
        seed=args.seed,
        chaos_window=args.window,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run_chaos(plan, args.keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = asyncio.run(run_chaos(plan, Path(tmp)))
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2, default=str))
    else:
        print("\n".join(report.lines()))
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
