"""The `harness` command. Thin: one function per subcommand, the work lives in the modules it calls.

Every input error (ConfigError) prints one line `harness: error: FILE:LINE: KEY: reason` and exits 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.config.loader import ConfigError


def cmd_train(args) -> int:
    from harness.runner.stages import train_stage

    out, manifest = train_stage(args.kind.replace("-", "_"), args.config, args.overrides, args.out)
    print(f"{args.kind}: {out} ({manifest.get('steps')} steps, {manifest.get('seconds', 0):.1f}s, "
          f"final loss {manifest.get('final_loss')})")
    return 0


def cmd_bench(args) -> int:
    from harness.bench import BENCHMARKS, load_benchmarks

    load_benchmarks()
    result = BENCHMARKS[args.name](args)
    if args.json:
        print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="SFT -> DPO/sDPO -> online-DPO ablation harness")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one stage from a YAML config")
    train.add_argument("kind", choices=["sft", "dpo", "sdpo", "online-dpo"])
    train.add_argument("config", help="stage config YAML")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-4 data.0.size=500")
    train.add_argument("--out", help="stage directory (default: output_dir in the config, else results/runs/KIND-HASH)")
    train.set_defaults(func=cmd_train)

    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bench.add_argument("name", choices=["packing", "dpo", "runner", "all"])
    bench.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    bench.add_argument("--quick", action="store_true", help="smaller sizes (for smoke tests)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"harness: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
