"""The training loop: resuming after a kill, checkpoints, schedule and EMA weights."""

import os
import signal
from pathlib import Path

import pytest
import torch

from latentlab import training
from latentlab.config import Config
from latentlab.data import ImageData, load_dataset
from latentlab.errors import UserError
from latentlab.experiments.autoencoder import build, reconstruction_step
from latentlab.files import save_atomic
from latentlab.models import ConvAutoencoder
from latentlab.training import Hooks, Interrupted, Job, Steps, fit, learning_rate
from latentlab.training.schedule import progress, steps_in_budget


def tiny_config(tmp_path: Path, **overrides: object) -> Config:
    values = dict(dataset="digits", epochs=3, batch_size=64, out=str(tmp_path),
                  encoder="mlp", latent_dim=8)
    values.update(overrides)
    return Config(**values).validate()  # type: ignore[arg-type]


def train(config: Config, checkpoint: Path, resume: bool = False, stop_at_call: int | None = None,
          ) -> torch.nn.Module:
    data = load_dataset("digits").limit(256, 64)
    model = build(config, data.image_shape)
    calls = 0

    def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
        nonlocal calls
        calls += 1
        if calls == stop_at_call:  # as if the user pressed Ctrl-C or the job was killed
            os.kill(os.getpid(), signal.SIGTERM)
        # dropout makes the step depend on the global RNG, which resume must restore
        noisy = torch.nn.functional.dropout(x, 0.2)
        return {"loss": torch.nn.functional.mse_loss(model(noisy), x)}

    fit(model, job(config, data, checkpoint, resume), Steps(step, reconstruction_step))
    return model


def job(config: Config, data: ImageData, checkpoint: Path, resume: bool = False) -> Job:
    """The test split stands in for validation: these tests score no model."""
    return Job(config, (data.train_images, data.train_labels),
               (data.test_images, data.test_labels), checkpoint, resume)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_after_a_kill_mid_epoch_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    straight = train(config, tmp_path / "a.pth")
    with pytest.raises(Interrupted):
        train(config, tmp_path / "b.pth", stop_at_call=6)  # epoch 2 of 3, step 2 of 4
    state = torch.load(tmp_path / "b.pth", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)
    resumed = train(config, tmp_path / "b.pth", resume=True)
    assert same_weights(straight, resumed)


def test_resume_with_a_time_budget_follows_the_step_count_not_the_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(tmp_path, time_budget=10.0)  # far more than 3 tiny epochs take
    monkeypatch.setattr("time.perf_counter", lambda: 0.0)  # both runs' first epochs alike
    straight = train(config, tmp_path / "a.pth")
    with pytest.raises(Interrupted):
        train(config, tmp_path / "b.pth", stop_at_call=6)  # epoch 2 of 3
    budget_steps = torch.load(tmp_path / "b.pth", weights_only=True)["budget_steps"]
    assert budget_steps > 12  # the budget as steps, measured over the first epoch
    clock = iter(range(0, 10**9, 100))  # the resumed run is slow: 100 s between two looks
    monkeypatch.setattr("time.perf_counter", lambda: float(next(clock)))
    resumed = train(config, tmp_path / "b.pth", resume=True)
    assert same_weights(straight, resumed)  # by the clock, the budget ran out at once


def test_a_hook_that_writes_has_the_checkpoint_written_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Best weights and the checkpoint are written in the same epoch: after a hard kill the
    resumed run never carries best weights from epochs it trains again."""
    written: list[int] = []

    def counting_save(obj: dict, path: Path) -> None:
        written.append(obj["epoch"])
        save_atomic(obj, path)

    monkeypatch.setattr("latentlab.training.loop.CHECKPOINT_SECONDS", 3600.0)
    monkeypatch.setattr("latentlab.training.state.save_atomic", counting_save)
    config = tiny_config(tmp_path)
    data = load_dataset("digits").limit(256, 64)
    model = build(config, data.image_shape)
    hooked: list[int] = []

    def best_at_epoch_two(epoch: int, record: dict) -> bool:
        hooked.append(epoch)
        return epoch == 2  # "wrote best weights" after the second epoch only

    fit(model, job(config, data, tmp_path / "a.pth"),
        Steps(reconstruction_step, reconstruction_step), Hooks(epoch_end=best_at_epoch_two))
    assert hooked == [1, 2, 3] and written == [2, 3]


@pytest.mark.parametrize("interval, saves", [(0.0, 3), (3600.0, 1)])
def test_short_epochs_share_a_checkpoint_and_the_last_epoch_always_writes_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval: float, saves: int) -> None:
    written: list[int] = []

    def counting_save(obj: dict, path: Path) -> None:
        written.append(obj["epoch"])
        save_atomic(obj, path)

    monkeypatch.setattr("latentlab.training.loop.CHECKPOINT_SECONDS", interval)
    monkeypatch.setattr("latentlab.training.state.save_atomic", counting_save)
    train(tiny_config(tmp_path), tmp_path / "a.pth")  # 3 epochs of a fraction of a second
    assert len(written) == saves and written[-1] == 3


def test_a_different_run_gives_different_weights(tmp_path: Path) -> None:
    first = train(tiny_config(tmp_path), tmp_path / "a.pth")
    other = train(tiny_config(tmp_path, seed=1), tmp_path / "b.pth")
    assert not same_weights(first, other)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    train(tiny_config(tmp_path, epochs=1), tmp_path / "a.pth")
    config = tiny_config(tmp_path, encoder="conv")
    data = load_dataset("digits").limit(64, 16)
    model = ConvAutoencoder(data.image_shape, latent_dim=8)
    with pytest.raises(UserError, match="checkpoint of another model"):
        fit(model, job(config, data, tmp_path / "a.pth", resume=True),
            Steps(reconstruction_step, reconstruction_step))


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    train(tiny_config(tmp_path, epochs=1), tmp_path / "a.pth")
    with pytest.raises(UserError, match="--learning-rate"):
        train(tiny_config(tmp_path, epochs=1, learning_rate=0.1), tmp_path / "a.pth", resume=True)


def test_loss_drops_within_twenty_steps(tmp_path: Path) -> None:
    data = load_dataset("digits").limit(320, 64)
    config = tiny_config(tmp_path, epochs=4, batch_size=64, warmup_epochs=0.0)
    model = build(config, data.image_shape)
    result = fit(model, job(config, data, tmp_path / "c.pth"),
                 Steps(reconstruction_step, reconstruction_step))
    history = result.history
    assert len(history) == 4
    assert history[-1]["val_loss"] < 0.7 * history[0]["val_loss"]


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    config = Config(epochs=10, warmup_epochs=1, learning_rate=1.0)
    assert learning_rate(config, 0.0) <= 0.011
    assert learning_rate(config, 0.1) == pytest.approx(1.0, abs=0.02)
    assert learning_rate(config, 0.55) == pytest.approx(0.5, abs=0.01)
    assert learning_rate(config, 1.0) == pytest.approx(0.0, abs=1e-9)


def test_progress_follows_the_steps_or_a_time_budget_that_runs_out_sooner() -> None:
    assert progress(1, 2, 4, 3) == 0.5  # step 6 of 12
    assert progress(1, 2, 4, 3, elapsed=30.0, budget=60.0) == 0.5
    assert progress(1, 2, 4, 3, elapsed=45.0, budget=60.0) == 0.75
    assert progress(0, 0, 4, 3, elapsed=100.0) == 0.0  # no budget: time plays no part
    # the budget as a step count: the clock plays no part
    assert progress(1, 2, 4, 3, elapsed=1e6, budget=60.0, budget_steps=8) == 0.75
    # from the (steps, progress) where the budget became steps, on in a line to 1
    anchored = dict(budget=60.0, budget_steps=20, budget_from=(8, 0.6))  # 40 steps planned
    assert progress(2, 0, 4, 10, **anchored) == pytest.approx(0.6)  # type: ignore[arg-type]
    assert progress(3, 2, 4, 10, **anchored) == pytest.approx(0.8)  # type: ignore[arg-type]
    assert progress(5, 0, 4, 10, **anchored) == pytest.approx(1.0)  # type: ignore[arg-type]


def test_the_budget_in_steps_is_the_steps_done_and_the_rest_of_the_time_at_the_pace() -> None:
    assert steps_in_budget(60.0, 20.0, 10, pace=0.5) == 30
    assert steps_in_budget(60.0, 70.0, 10, pace=0.5) == 10  # over budget: no more steps


def test_a_time_budget_becomes_steps_after_the_first_epoch_at_the_settled_pace(
        tmp_path: Path) -> None:
    """A step that changes its cost halfway (progressive resizing) must not have its
    early, cheaper epochs set the pace for the rest of the budget."""
    config = tiny_config(tmp_path, epochs=4, time_budget=10.0)  # far more than 4 tiny epochs
    data = load_dataset("digits").limit(256, 64)  # 4 steps an epoch
    seen: list[float] = []
    steps = Steps(reconstruction_step, reconstruction_step, on_progress=seen.append,
                  settles_at=0.5)
    fit(build(config, data.image_shape), job(config, data, tmp_path / "c.pth"), steps)
    assert seen == pytest.approx([i / 16 for i in range(16)], abs=1e-3)  # before each step
    saved = torch.load(tmp_path / "c.pth", weights_only=True)
    # epochs 1 and 2 began before 0.5; epoch 3 began at it, so the budget became steps after it
    assert saved["budget_from"] == [12, 0.75]
    assert saved["budget_steps"] > 16


def test_ema_keeps_and_scores_the_moving_average_of_the_weights(tmp_path: Path) -> None:
    decay = 0.5  # large steps of the average, so every weight along the way counts
    # fp32: the scores below are recomputed outside autocast
    config = tiny_config(tmp_path, ema=decay, precision="fp32")  # 3 epochs of 4 steps
    data = load_dataset("digits").limit(256, 64)
    model = build(config, data.image_shape)
    seen: list[dict[str, torch.Tensor]] = []  # the weights before each step
    kept: list[dict[str, torch.Tensor]] = []  # what on_epoch_end sees

    def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return reconstruction_step(model, x, y)

    result = fit(model, job(config, data, tmp_path / "a.pth"), Steps(step, reconstruction_step),
                 Hooks(epoch_end=lambda epoch, record: kept.append(
                     {k: v.clone() for k, v in model.state_dict().items()})))
    last = torch.load(tmp_path / "a.pth", weights_only=True)["model"]  # the last weights
    after_each_step = seen[1:] + [last]
    assert len(after_each_step) == 12
    for key, value in model.state_dict().items():
        average = after_each_step[0][key]
        for weights in after_each_step[1:]:
            average = decay * average + (1 - decay) * weights[key]
        assert torch.allclose(value, average, atol=1e-6), key
        assert not torch.allclose(value, last[key]), key
        assert torch.equal(value, kept[-1][key]), key  # the kept weights are the average's

    # each epoch scores both: the average as val_loss, the last weights as val_raw_loss
    final = result.history[-1]
    averaged = training.validate(model, reconstruction_step, data.test_images, data.test_labels)
    model.load_state_dict(last)
    own = training.validate(model, reconstruction_step, data.test_images, data.test_labels)
    assert final["val_loss"] == pytest.approx(averaged["loss"], rel=1e-5)
    assert final["val_raw_loss"] == pytest.approx(own["loss"], rel=1e-5)
    assert final["val_loss"] != pytest.approx(final["val_raw_loss"], rel=1e-3)


def test_resume_with_ema_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, ema=0.9)
    straight = train(config, tmp_path / "a.pth")
    with pytest.raises(Interrupted):
        train(config, tmp_path / "b.pth", stop_at_call=6)
    resumed = train(config, tmp_path / "b.pth", resume=True)
    assert same_weights(straight, resumed)
    without = train(tiny_config(tmp_path), tmp_path / "c.pth")
    assert not same_weights(straight, without)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_ema_outside_zero_to_one_is_refused(tmp_path: Path, decay: float) -> None:
    with pytest.raises(UserError, match="--ema"):
        tiny_config(tmp_path, ema=decay)
