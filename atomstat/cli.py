"""Command-line interface: ``atomstat analyze``, ``atomstat train``.

Each subcommand parses its arguments and calls the library; no analysis
logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

__all__ = ["main"]

log = logging.getLogger("atomstat")


def _train(args) -> int:
    from .fcn.train import TrainConfig, train

    config = TrainConfig(
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        patch=args.patch,
        learning_rate=args.learning_rate,
        seed=args.seed,
        batchnorm=not args.no_batchnorm,
        command="atomstat " + shlex.join(sys.argv[1:]),
    )
    train(config, args.out)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atomstat", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the FCN on simulated images")
    t.add_argument("--out", required=True, help="output path without suffix, e.g. models/universal")
    t.add_argument("--steps", type=int, default=6000)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--patch", type=int, default=128, help="training image side (px)")
    t.add_argument("--width", type=int, default=20, help="kernels in the first block")
    t.add_argument("--learning-rate", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--no-batchnorm",
        action="store_true",
        help="train the plain paper network (slower to converge)",
    )
    t.set_defaults(func=_train)
    return p


def main(argv=None) -> int:
    """Entry point of the ``atomstat`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
