"""Every notebook in notebooks/ runs top to bottom, offline, without an error, and shows at
least one figure; the notebooks are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import latentlab

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' to run notebooks")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' to run notebooks")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == ["embeddings.ipynb", "unmixing.ipynb", "vae.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_shows_figures(
        path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel imports the latentlab under test, writes its runs (tempfile.mkdtemp) into
    # tmp_path, and runs one thread per library: tiny models run fastest on one, and
    # scikit-learn's threads stall for seconds on a busy machine
    source = str(Path(latentlab.__file__).parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [source, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # the kernel's own inline backend shows the figures, whatever the shell set (CI: Agg)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    shown = [any("image/png" in o.get("data", {}) for o in cell.outputs) for cell in cells]
    assert any(shown), "no figure shown"
    # figures still show once training has run (latentlab's own plotting must not switch
    # the kernel's matplotlib backend)
    trained = next(i for i, cell in enumerate(cells) if "\nlatentlab_command(" in
                   f"\n{cell.source}")
    assert any(shown[trained + 1:]), "no figure shown after the first training run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} holds outputs; clear them before committing (in Jupyter: Edit > "
                "Clear Outputs of All Cells; or jupyter nbconvert --clear-output --inplace)")
