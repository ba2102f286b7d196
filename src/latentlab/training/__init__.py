"""Training, in three parts: schedule.py (learning rate, batches, time budget), state.py
(what a checkpoint holds and resume restores) and loop.py (fit and its steps). The names
callers use are importable from here."""

from latentlab.devices import pick_device
from latentlab.training.loop import (
    CHECKPOINT_SECONDS,
    EvalStep,
    Hooks,
    Interrupted,
    Job,
    Steps,
    StopFlag,
    TrainStep,
    averaged_weights,
    fit,
    totals_over_processes,
    validate,
)
from latentlab.training.schedule import batches, learning_rate, steps_per_epoch
from latentlab.training.state import (
    RESUMABLE_CHANGES,
    TrainResult,
    TrainState,
    check_compatible,
)

__all__ = [
    "CHECKPOINT_SECONDS", "RESUMABLE_CHANGES", "EvalStep", "Hooks", "Interrupted", "Job",
    "Steps", "StopFlag", "TrainResult", "TrainState", "TrainStep", "averaged_weights",
    "batches", "check_compatible", "fit", "learning_rate", "pick_device", "steps_per_epoch",
    "totals_over_processes", "validate",
]
