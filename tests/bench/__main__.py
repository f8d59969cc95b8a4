"""``python -m tests.bench [core] [--json PATH]``"""

from __future__ import annotations

import argparse

from tests.bench import core

parser = argparse.ArgumentParser(prog="python -m tests.bench")
parser.add_argument("which", nargs="?", default="core", choices=["core"])
parser.add_argument("--json", default="bench-results/core.json")
args = parser.parse_args()
core.main(args.json)
