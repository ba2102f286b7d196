"""torchrun on the CPU (gloo) gives the same model as one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import latentlab
from latentlab.distributed import gather_with_gradient
from latentlab.losses import supcon_loss

# fp32: bfloat16 rounding (--precision auto on CPUs with native bf16) depends on how the
# batch is split between processes, so only fp32 runs agree to the tolerance below
COMMON = ["--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--encoder", "mlp",
          "--tsne-points", "50", "--seed", "3", "--precision", "fp32"]
CASES = {"autoencoder": ["train", "autoencoder", *COMMON]}


def run(command: list[str], args: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_match_one_and_write_one_set_of_files(tmp_path: Path, case: str) -> None:
    args = CASES[case]
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "latentlab"], args, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    one = run([sys.executable, "-m", "latentlab"], args, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]

    a = latentlab.load(tmp_path / "one" / case / f"{case}_model.pth")
    b = latentlab.load(tmp_path / "two" / case / f"{case}_model.pth")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-5), name
    files = sorted(p.name for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert files == sorted(p.name for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert two.stdout.count("results written to") == 1


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["train", "separator", "--model", "unet"],  # trains outside experiments.shared.train
    ["train", "vae", "--tsne-points", "50"],  # trains a plain autoencoder after the VAE
], ids=["separator", "vae"])
def test_experiments_that_train_twice_or_alone_run_under_torchrun(tmp_path: Path,
                                                                  args: list[str]) -> None:
    args = [*args, "--dataset", "digits", "--epochs", "1", "--batch-size", "64",
            "--train-limit", "256", "--test-limit", "64"]
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "latentlab"], args, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    one = run([sys.executable, "-m", "latentlab"], args, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert files == sorted(p.name for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert two.stdout.count("results written to") == 1


def supcon_gradient_in_process(rank: int, port: int, z: torch.Tensor, labels: torch.Tensor,
                               out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    local = z[rank::2].clone().requires_grad_(True)  # this process's half of the batch
    gathered = gather_with_gradient(local)
    loss = supcon_loss(gathered, gather_with_gradient(labels[rank::2]), 0.5)
    loss.backward()
    # The gather's backward sums both processes' (identical) losses' gradients, and
    # DistributedDataParallel then averages over the 2 processes: half of this is the share
    # of this process's rows in the global-batch gradient.
    torch.save({"grad": local.grad / 2, "loss": loss.detach()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_supcon_gives_the_global_batch_gradient(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.manual_seed(0)
    z = torch.randn(8, 2, 5)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])
    mp.start_processes(supcon_gradient_in_process, args=(port, z, labels, str(tmp_path)),
                       nprocs=2, start_method="spawn")
    # one process with the batch in the order the gather lays it out
    order = torch.cat([torch.arange(0, 8, 2), torch.arange(1, 8, 2)])
    whole = z[order].clone().requires_grad_(True)
    expected_loss = supcon_loss(whole, labels[order], 0.5)
    expected_loss.backward()
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(saved["loss"], expected_loss.detach(), atol=1e-6)
        mine = torch.arange(4) + 4 * rank
        assert torch.allclose(saved["grad"], whole.grad[mine], atol=1e-6)
