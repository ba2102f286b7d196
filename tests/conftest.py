"""Shared fixtures: an isolated cache for every test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                   ) -> Path:
    """Each test gets its own cache and no $LATENTLAB_DATA, so nothing leaks between tests."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LATENTLAB_CACHE", str(cache))
    monkeypatch.delenv("LATENTLAB_DATA", raising=False)
    return cache


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and do not stall on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def http_mirror(tmp_path: Path):
    """A loopback HTTP server over tmp_path/mirror, standing in for a dataset host."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "mirror"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def digits_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder as a digits run leaves it: two embedding models (on different test
    subsets), two separation models and a comparison table. Built once; copy before writing."""
    import json

    from resultfiles import embedding_run, separation_run

    out = tmp_path_factory.mktemp("results")
    embedding_run(out, "autoencoder", latent_dim=32, seed=0)
    embedding_run(out, "supcon", latent_dim=8, seed=1, test_limit=200)
    separation_run(out, "unet", psnr=21.5)
    separation_run(out, "vae", psnr=19.0)
    (out / "comparison.json").write_text(json.dumps(
        [{"model": "autoencoder", "knn_accuracy": 0.9}, {"model": "supcon",
                                                          "knn_accuracy": 0.95}]))
    return out


@pytest.fixture(scope="session")
def trained_unet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A U-Net trained for a few seconds on digits, and its metrics. Trained once per session;
    the tests that use it only read it."""
    import torch

    from latentlab.cli import main

    out = tmp_path_factory.mktemp("results")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "separator", "--model", "unet", "--dataset", "digits",
                     "--epochs", "3", "--batch-size", "64", "--test-limit", "80",
                     "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out / "separation"
