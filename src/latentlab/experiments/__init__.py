"""Each experiment wires data, model, loss, training and evaluation together in one file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentlab.config import Config
from latentlab.experiments import autoencoder, contrastive, separation, vae

# name -> run(config, resume) -> metrics; the CLI only looks names up here.
EXPERIMENTS: dict[str, Callable[[Config, bool], dict[str, Any]]] = {
    "autoencoder": autoencoder.run,
    "vae": vae.run,
    "separator": separation.run,
    "contrastive": contrastive.run,
    "supcon": contrastive.run,
    "simclr": contrastive.run,
}
