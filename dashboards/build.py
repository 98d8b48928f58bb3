"""`python -m dashboards.build` (or `supplymon dashboards build`): write the Grafana
dashboards generated from dashboards/panels.py to dashboards/grafana/ (committed;
tests/test_dashboards.py fails when they are stale). `--check` only compares."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards.grafana import all_dashboards

OUT = Path(__file__).resolve().parent / "grafana"


def stale(out: Path = OUT) -> list[str]:
    """The files under `out` that differ from what the panels generate (or are extra)."""
    wanted = all_dashboards()
    present = {p.name for p in out.glob("*.json")} if out.exists() else set()
    differ = [name for name, text in wanted.items()
              if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != text]
    return sorted(differ + list(present - wanted.keys()))


def write(out: Path = OUT) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    wanted = all_dashboards()
    for path in out.glob("*.json"):
        if path.name not in wanted:
            path.unlink()
    for name, text in wanted.items():
        (out / name).write_text(text, encoding="utf-8")
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supplymon dashboards build", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help=f"directory (default {OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        differ = stale(args.out)
        for name in differ:
            print(f"stale: {args.out / name} (run: python -m dashboards.build)", file=sys.stderr)
        return 1 if differ else 0
    for name in write(args.out):
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
