"""The `latentlab` command. Every error a user can cause ends in one message and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentlab import distributed
from latentlab.config import (
    MAX_SEED,
    Config,
    check_device,
    check_folder,
    coerce,
    dashed,
    fields_for,
    from_toml,
    min_batch_size,
)
from latentlab.errors import UserError
from latentlab.training import Interrupted

# what add_subparsers returns: each add_*_command adds its command to it
Commands = argparse._SubParsersAction

DESCRIPTION = """Learn image representations from scratch and see what they learned.

examples:
  latentlab datasets
  latentlab train autoencoder --dataset digits --epochs 2
  latentlab train autoencoder --dataset folder:cifar10-jpeg.zip --epochs 10
  latentlab report results
  latentlab embed results/autoencoder/autoencoder_model.pth digits --out embeddings
  latentlab train vae --dataset digits --epochs 20
  latentlab vae-study --dataset digits --betas 0.1,0.5,1,4
  latentlab train separator --model unet --dataset digits --epochs 1
  latentlab separate results/separation/unet/separator_model.pth --mix a.png b.png --out mixed
  latentlab separate results/separation/unet/separator_model.pth blended.png
  latentlab evaluate pretrained/cifar10_unet_separator.pth --dataset folder:official.zip
  latentlab run --quick --dataset digits
"""


def add_config_options(parser: argparse.ArgumentParser, experiment: str) -> None:
    """One --option per Config field the experiment uses; absent options stay unset."""
    for f in fields_for(experiment):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.type == "bool":  # a flag: --name sets it
            parser.add_argument(f"--{dashed(f.name)}", dest=f.name, action="store_true",
                                default=argparse.SUPPRESS, help=f.metadata["help"])
            continue
        text = f.metadata["help"]
        if f.name == "batch_size":  # each experiment says which sizes it trains with
            smallest = min_batch_size(experiment)
            text += f"; {experiment} trains with {smallest} or more"
        parser.add_argument(f"--{dashed(f.name)}", dest=f.name, default=argparse.SUPPRESS,
                            metavar=f.name.upper(), help=f"{text} (default: {default})")
    parser.add_argument("--config", dest="config_file", metavar="FILE.toml",
                        help="read option values from a TOML file (command-line options win)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its checkpoint in --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentlab", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # each adds its command, with the function that runs it (args.run): one place per command
    for add in (add_datasets_command, add_train_command, add_report_command,
                add_embed_command, add_vae_study_command, add_separate_command,
                add_evaluate_command, add_run_command):
        add(commands)
    return parser


def add_datasets_command(commands: Commands) -> None:
    datasets = commands.add_parser("datasets", help="list datasets and where they were found")
    datasets.add_argument("--data-dir", help="directory searched first")
    datasets.set_defaults(run=command_datasets)


def add_report_command(commands: Commands) -> None:
    report = commands.add_parser("report", help="write RESULTS_DIR/report.html: metrics, "
                                 "figures and an embedding explorer in one offline page")
    report.add_argument("results_dir", metavar="RESULTS_DIR",
                        help="the --out folder of one or more training runs")
    report.set_defaults(run=command_report)


def add_train_command(commands: Commands) -> None:
    """train MODEL: every Config field the experiment uses is an option."""
    from latentlab.experiments import EXPERIMENTS

    train = commands.add_parser("train", help="train one model and write its results")
    experiments = train.add_subparsers(dest="experiment", metavar="MODEL", required=True)
    for name in EXPERIMENTS:
        add_config_options(experiments.add_parser(name, help=f"train the {name} model"), name)
    train.set_defaults(run=command_train)


def add_vae_study_command(commands: Commands) -> None:
    study = commands.add_parser("vae-study", help="train the VAE with several KL weights "
                                "(beta) and compare them in one figure")
    add_config_options(study, "vae")
    study.add_argument("--betas", default="0.1,0.5,1,4",
                       help="comma-separated KL weights to train (default: 0.1,0.5,1,4)")
    study.set_defaults(run=command_vae_study)


def add_run_command(commands: Commands) -> None:
    run = commands.add_parser("run", help="train the autoencoder and the contrastive model on "
                              "one dataset and compare their embeddings")
    add_config_options(run, "contrastive")
    run.add_argument("--quick", action="store_true",
                     help="a quick look: 3 epochs (unless --epochs is given)")
    run.set_defaults(run=command_run)


def add_embed_command(commands: Commands) -> None:
    embed = commands.add_parser("embed", help="embed images with a trained model; write .npy "
                                "files and TensorBoard Embedding Projector TSVs")
    embed.add_argument("checkpoint", metavar="CHECKPOINT", help="a <name>_model.pth file")
    embed.add_argument("source", metavar="IMAGES_OR_DATASET",
                       help="an image, a folder or .zip of images (classes from sub-folder "
                       "names), or a dataset name: digits, mnist, cifar10, folder:PATH ...")
    embed.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    embed.add_argument("--split", default="test", metavar="SPLIT",
                       help="for a dataset: test, train or all (default: test)")
    embed.add_argument("--limit", type=int, metavar="N", help="embed only the first N images")
    embed.add_argument("--data-dir", help="directory searched first for dataset files")
    embed.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    embed.set_defaults(run=command_embed)


def add_separate_command(commands: Commands) -> None:
    separate = commands.add_parser(
        "separate", help="split a blend of two images with a trained separator",
        description="Separate blended images into two images each with a separator_model.pth, "
                    "or mix two images (their average) with --mix and separate the mixture.")
    separate.add_argument("checkpoint", metavar="CHECKPOINT",
                          help="separator_model.pth written by `latentlab train separator`")
    separate.add_argument("blended", metavar="BLENDED", nargs="*",
                          help="images that are the average of two images, or folders of them")
    separate.add_argument("--mix", nargs=2, metavar=("A", "B"),
                          help="mix these two images and separate the mixture")
    separate.add_argument("--out", default="separated",
                          help="folder for the PNG results (default: separated)")
    separate.set_defaults(run=command_separate)


def add_evaluate_command(commands: Commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="score a saved model on the test split of any dataset",
        description="Score a saved model on a dataset's test split: a separator by PSNR, SSIM "
                    "and its gain over returning the mixture (and, where a twins file lies "
                    "beside the dataset, on the images' JPEG twins and the shortcut ratio); "
                    "an embedding model by kNN and linear probe; a VAE by bits/dim too.")
    evaluate.add_argument("checkpoint", metavar="MODEL", help="a <name>_model.pth file")
    evaluate.add_argument("--dataset", required=True, metavar="SPEC",
                          help="cifar10, fashion-mnist, mnist, digits or folder:PATH")
    evaluate.add_argument("--bank", metavar="SPEC", help="embedding models: the dataset whose "
                          "training split is the kNN and probe bank (default: --dataset)")
    evaluate.add_argument("--seed", type=int, help="seed of a folder's held-out test split "
                          "(default: the --test-seed of the run that trained the model)")
    evaluate.add_argument("--test-limit", type=int, metavar="N", help="score only the seeded "
                          "subset of N test images that a run with --test-limit N scores")
    evaluate.add_argument("--data-dir", help="directory searched first for dataset files")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    evaluate.add_argument("--out", metavar="FILE.json", help="also write the scores here")
    evaluate.add_argument("--examples", metavar="FILE.png", help="separators: draw the first "
                          "10 test mixtures, their sources and the two outputs here")
    evaluate.set_defaults(run=command_evaluate)


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
    # the headline numbers; tables and curves stay in metrics.json
    shown = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    print(json.dumps(shown, indent=2))
    print(f"results written to {config.run_dir}/ (all metrics in metrics.json)")
    return 0


def command_report(args: argparse.Namespace) -> int:
    from latentlab.report import write_report

    path = write_report(args.results_dir)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0


def command_embed(args: argparse.Namespace) -> int:
    from latentlab.export import export_embeddings

    check_device(args.device)
    check_folder(args.out, "--out")
    written = export_embeddings(args.checkpoint, args.source, args.out, split=args.split,
                                limit=args.limit, data_dir=args.data_dir, device=args.device)
    for what, path in written.items():
        print(f"{what:<11} {path}")
    print("load vectors.tsv and metadata.tsv at projector.tensorflow.org to explore them")
    return 0


def parse_betas(text: str) -> tuple[float, ...]:
    try:
        betas = tuple(float(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise UserError(f"--betas must be comma-separated numbers like 0.1,1,4, not {text!r}"
                        ) from None
    if (not betas or any(not 0 <= b < float("inf") for b in betas)
            or len(set(betas)) != len(betas)):
        raise UserError("--betas needs distinct finite numbers of 0 or more, like 0.1,1,4, "
                        f"not {text!r}")
    return betas


def command_vae_study(args: argparse.Namespace) -> int:
    from latentlab.experiments import vae_study

    betas = parse_betas(args.betas)
    vae_study.run(resolve_config(args, "vae"), betas, args.resume)
    return 0


def command_separate(args: argparse.Namespace) -> int:
    from latentlab.separate import separate_files

    if args.blended and args.mix:
        raise UserError("give either blended images (or folders of them) or --mix A B, "
                        "not both")
    if not args.blended and not args.mix:
        raise UserError("give the blended images (or folders of them) to separate, or --mix "
                        "A B to mix two images and separate the mixture")
    check_folder(args.out, "--out")
    separate_files(args.checkpoint, args.blended, args.mix, args.out)
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from latentlab.evaluate import describe, evaluate_saved
    from latentlab.files import write_json_atomic

    if args.test_limit is not None and args.test_limit < 2:
        raise UserError(f"--test-limit must be 2 or more, not {args.test_limit}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be a whole number from 0 to {MAX_SEED}, not {args.seed}")
    check_device(args.device)
    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give the name of a .json file to write")
    row = evaluate_saved(args.checkpoint, args.dataset, data_dir=args.data_dir, bank=args.bank,
                         seed=args.seed, device=args.device, test_limit=args.test_limit,
                         examples=args.examples)
    print(describe(row))
    if args.out:
        write_json_atomic(row, args.out)
        print(f"scores written to {args.out}")
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
    from latentlab.report import write_report

    path = write_report(config.out)
    print(f"report written to {path}; open it in a browser")
    return 0


def out_of_memory(error: BaseException) -> str:
    """The one-line message for an error that says memory ran out, else ''."""
    text = str(error)
    if not (isinstance(error, MemoryError) or "out of memory" in text.lower()
            or "can't allocate memory" in text):
        return ""
    asked = re.search(r"allocate (\d+) bytes", text)
    size = f" (it asked for {int(asked[1]) / 2**30:,.1f} GiB at once)" if asked else ""
    return (f"out of memory{size}; lower --batch-size, --width or --latent-dim, or use a "
            "machine with more memory")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except UserError as error:
        print(f"latentlab: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder that cannot be written, a full disk, ...
        where = f" {error.filename}" if error.filename else ""
        print(f"latentlab: error: cannot read or write{where}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not out_of_memory(error):
            raise
        print(f"latentlab: error: {out_of_memory(error)}", file=sys.stderr)
        return 2
    except distributed.WorkerFinished:  # under torchrun, a process whose part is done
        return 0
    except Interrupted as stop:
        print(f"latentlab: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("latentlab: interrupted at once; the last checkpoint (saved after every epoch) "
              "is kept, and --resume continues from it", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
