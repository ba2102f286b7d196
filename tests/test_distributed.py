"""torchrun on the CPU (gloo) gives the same model as one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch

import latentlab

ARGS = ["train", "autoencoder", "--dataset", "digits", "--epochs", "1", "--batch-size", "64",
        "--encoder", "mlp", "--tsne-points", "50", "--seed", "3"]


def run(command: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, *ARGS, "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_two_processes_match_one_and_write_one_set_of_files(tmp_path: Path) -> None:
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "latentlab"], tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    one = run([sys.executable, "-m", "latentlab"], tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]

    a = latentlab.load(tmp_path / "one" / "autoencoder" / "autoencoder_model.pth")
    b = latentlab.load(tmp_path / "two" / "autoencoder" / "autoencoder_model.pth")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-5), name
    files = sorted(p.name for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert files == sorted(p.name for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert two.stdout.count("results written to") == 1
