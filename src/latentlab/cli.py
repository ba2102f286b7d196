"""The `latentlab` command. Every error a user can cause ends in one message and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from latentlab import distributed
from latentlab.config import Config, coerce, dashed, fields_for, from_toml
from latentlab.errors import UserError
from latentlab.training import Interrupted

DESCRIPTION = """Learn image representations from scratch and see what they learned.

examples:
  latentlab datasets
  latentlab train autoencoder --dataset digits --epochs 2
  latentlab train autoencoder --dataset folder:cifar10-jpeg.zip --epochs 10
  latentlab train vae --dataset digits --epochs 20
  latentlab vae-study --dataset digits --betas 0.1,0.5,1,4
"""


def add_config_options(parser: argparse.ArgumentParser, experiment: str) -> None:
    """One --option per Config field the experiment uses; absent options stay unset."""
    for f in fields_for(experiment):
        default = f.default if f.default is not dataclasses.MISSING else None
        parser.add_argument(f"--{dashed(f.name)}", dest=f.name, default=argparse.SUPPRESS,
                            metavar=f.name.upper(),
                            help=f"{f.metadata['help']} (default: {default})")
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

    study = commands.add_parser("vae-study", help="train the VAE with several KL weights "
                                "(beta) and compare them in one figure")
    add_config_options(study, "vae")
    study.add_argument("--betas", default="0.1,0.5,1,4",
                       help="comma-separated KL weights to train (default: 0.1,0.5,1,4)")
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


def parse_betas(text: str) -> tuple[float, ...]:
    try:
        betas = tuple(float(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise UserError(f"--betas must be comma-separated numbers like 0.1,1,4, not {text!r}"
                        ) from None
    if not betas or any(not b >= 0 for b in betas) or len(set(betas)) != len(betas):
        raise UserError(f"--betas needs distinct numbers of 0 or more, like 0.1,1,4, not {text!r}")
    return betas


def command_vae_study(args: argparse.Namespace) -> int:
    from latentlab.experiments import vae_study

    betas = parse_betas(args.betas)
    vae_study.run(resolve_config(args, "vae"), betas, args.resume)
    return 0


COMMANDS = {"datasets": command_datasets, "train": command_train,
            "vae-study": command_vae_study}


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
        print("latentlab: interrupted at once; the last checkpoint (saved after every epoch) "
              "is kept, and --resume continues from it", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
