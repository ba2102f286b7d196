"""The `latentlab` command. Every error a user can cause ends in one message and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from latentlab.config import Config, coerce, dashed, fields_for, from_toml
from latentlab.errors import UserError
from latentlab.training import Interrupted

DESCRIPTION = """Learn image representations from scratch and see what they learned.

examples:
  latentlab datasets
  latentlab train autoencoder --dataset digits --epochs 2
  latentlab train autoencoder --dataset folder:cifar10-jpeg.zip --epochs 10
  latentlab run --quick --dataset digits
"""


def add_config_options(parser: argparse.ArgumentParser, experiment: str) -> None:
    """One --option per Config field the experiment uses; absent options stay unset."""
    for f in fields_for(experiment):
        default = f.default if f.default is not dataclasses.MISSING else None
        parser.add_argument(f"--{dashed(f.name)}", dest=f.name, default=argparse.SUPPRESS,
                            metavar=f.name.upper(), help=f"{f.metadata['help']} (default: {default})")
    parser.add_argument("--config", dest="config_file", metavar="FILE.toml",
                        help="read option values from a TOML file (command-line options win)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its checkpoint in --out")


def build_parser() -> argparse.ArgumentParser:
    from latentlab.experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(prog="latentlab", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    datasets = commands.add_parser("datasets", help="list datasets and where they were found")
    datasets.add_argument("--data-dir", help="directory searched first")

    train = commands.add_parser("train", help="train one model and write its results")
    experiments = train.add_subparsers(dest="experiment", metavar="MODEL", required=True)
    for name in EXPERIMENTS:
        add_config_options(experiments.add_parser(name, help=f"train the {name} model"), name)

    run = commands.add_parser("run", help="train the autoencoder and the contrastive model on "
                              "one dataset and compare their embeddings")
    add_config_options(run, "contrastive")
    run.add_argument("--quick", action="store_true",
                     help="a quick look: 3 epochs (unless --epochs is given)")
    return parser


def resolve_config(args: argparse.Namespace, experiment: str) -> Config:
    """Defaults, then the TOML file, then the command line; validated."""
    values: dict[str, Any] = {}
    if getattr(args, "config_file", None):
        values.update(from_toml(args.config_file))
    for f in fields_for(experiment):
        if f.name in vars(args):
            values[f.name] = coerce(f.name, getattr(args, f.name))
    values["experiment"] = experiment
    return Config(**values).validate()


def command_datasets(args: argparse.Namespace) -> int:
    from latentlab.data import describe_datasets

    for name, where in describe_datasets(args.data_dir):
        print(f"{name:<14} {where}")
    return 0


def command_train(args: argparse.Namespace) -> int:
    from latentlab.experiments import EXPERIMENTS

    config = resolve_config(args, args.experiment)
    metrics = EXPERIMENTS[args.experiment](config, args.resume)
    print(json.dumps(metrics, indent=2))
    print(f"results written to {config.run_dir}/")
    return 0


def command_run(args: argparse.Namespace) -> int:
    from latentlab.experiments.comparison import compare, format_table

    if args.quick and "epochs" not in vars(args):
        args.epochs = 3
    config = resolve_config(args, "contrastive")
    comparison = compare(config, args.resume)
    print(format_table(comparison))
    print(f"comparison written to {config.out}/comparison.json, embedding_comparison.png "
          "and distance_comparison.png")
    return 0


COMMANDS = {"datasets": command_datasets, "train": command_train, "run": command_run}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"latentlab: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"latentlab: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("latentlab: interrupted", file=sys.stderr)
        return 130
