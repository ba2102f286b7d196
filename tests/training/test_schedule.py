"""The KL warm-up: one schedule for the VAE and the variational separator."""

from pathlib import Path

import torch

from latentlab.checkpoint import FORMAT, FORMAT_VERSION
from latentlab.config import Config
from latentlab.files import save_atomic
from latentlab.training.schedule import KLWarmup, kl_warmup


def test_kl_weight_rises_linearly_then_stays_at_beta():
    warmup = KLWarmup(beta=2.0, warmup_epochs=2, per_epoch=2)
    assert [warmup.step() for _ in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert KLWarmup(beta=3.0, warmup_epochs=0, per_epoch=5).step() == 3.0


def test_a_resumed_run_carries_on_the_warm_up_where_it_stopped(tmp_path: Path):
    config = Config(experiment="separator", model="vae", beta=1.0, kl_warmup_epochs=4,
                    batch_size=10)  # 100 images: 10 steps an epoch, warm-up over 40
    checkpoint = tmp_path / "checkpoint.pth"
    save_atomic({"format": FORMAT, "format_version": FORMAT_VERSION, "epoch": 2, "step": 3,
                 "model": {}}, checkpoint)
    resumed = kl_warmup(config, 100, checkpoint, resume=True)
    assert resumed.step() == 23 / 40  # 2 epochs and 3 steps done
    assert kl_warmup(config, 100, checkpoint, resume=False).step() == 0.0
    uninterrupted = kl_warmup(config, 100, tmp_path / "none.pth", resume=True)
    weights = [uninterrupted.step() for _ in range(24)]
    assert weights[23] == 23 / 40 and torch.tensor(weights).diff().min() > 0
