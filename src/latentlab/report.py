"""One self-contained report.html per results folder: reading, explorer, metrics, figures, config.

`write_report(results_dir)` finds every run under results_dir (a folder with metrics.json),
puts their metrics side by side, embeds every figure as base64, adds the embedding explorer
(see explorer.py) and a short plain-language reading of the numbers. The page needs no
network: scripts, styles and images are all inside the one file.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from latentlab.errors import UserError
from latentlab.explorer import explorer_data
from latentlab.files import write_json_atomic, write_text_atomic
from latentlab.plots import plot_class_pair_psnr, plot_separation_comparison

REPORT_NAME = "report.html"
# Metric name fragments and which way is better; used to mark the best value in each row.
HIGHER_IS_BETTER = ("accuracy", "silhouette", "between_within_ratio", "psnr", "snr", "sdr",
                    "ssim", "auc")
LOWER_IS_BETTER = ("mse", "mae", "loss", "error", "nll", "fid", "bits_per_dim")
# Shown first in the metrics table, in this order, when present.
LEADING_METRICS = ("knn_accuracy", "linear_probe_accuracy", "raw_pixel_knn_accuracy",
                   "silhouette", "pair_auc", "between_within_ratio", "mean_within_class_distance",
                   "mean_between_class_distance", "reconstruction_mse", "reconstruction_psnr")


@dataclass
class Run:
    """One trained model's results folder."""

    name: str  # path relative to the results folder, e.g. "autoencoder" or "separation/unet"
    folder: Path
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    test_count: int | None = None  # test images the embedding metrics were measured on
    num_classes: int | None = None

    @property
    def group(self) -> str:
        """The folder above the run ("" for top-level runs): separation runs form a group."""
        return str(Path(self.name).parent) if "/" in self.name else ""


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def find_runs(results_dir: Path) -> list[Run]:
    """Every folder under results_dir (itself included) that holds a metrics.json."""
    runs = []
    for path in sorted(results_dir.rglob("metrics.json")):
        folder = path.parent
        relative = folder.relative_to(results_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        metrics = read_json(path)
        if not isinstance(metrics, dict):
            continue
        saved = read_json(folder / "config.json") or {}
        run = Run(name=relative.as_posix() if relative.parts else folder.resolve().name,
                  folder=folder, metrics=metrics, config=saved.get("config") or {},
                  code_version=str(saved.get("code_version", "")))
        embeddings = folder / "test_embeddings.npz"
        if embeddings.is_file():
            try:
                with np.load(embeddings) as npz:
                    labels = npz["labels"]
                run.test_count = len(labels)
                run.num_classes = len(np.unique(labels))
            except (OSError, KeyError, ValueError):
                pass
        runs.append(run)
    # top-level runs first, then grouped ones (separation/...), each alphabetically
    return sorted(runs, key=lambda r: (r.group != "", r.group, r.name))


def find_comparisons(results_dir: Path) -> list[tuple[str, Any]]:
    """(relative path, contents) of every comparison.json under results_dir."""
    found = []
    for path in sorted(results_dir.rglob("comparison.json")):
        contents = read_json(path)
        if contents is not None:
            found.append((path.relative_to(results_dir).as_posix(), contents))
    return found


def comparison_records(contents: Any) -> dict[str, dict[str, Any]] | None:
    """The records of a comparison.json of the shapes latentlab writes, by run folder name:
    {"models": {name: metrics}} (latentlab run) or [{"model": name, ...}] (separators)."""
    if isinstance(contents, dict) and isinstance(contents.get("models"), dict):
        records = contents["models"]
    elif isinstance(contents, list) and all(isinstance(r, dict) and isinstance(
            r.get("model"), str) for r in contents):
        records = {r["model"]: r for r in contents}
    else:
        return None
    return records if all(isinstance(r, dict) for r in records.values()) else None


def fold_comparisons(results_dir: Path, runs: list[Run],
                     comparisons: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Merge each comparison.json into the metrics of the runs it describes (figures the
    runs' own metrics.json lacks, such as the autoencoder's pair AUC, are added), so the
    metrics table shows every figure once; return the comparisons that hold something else
    (another shape, a run not found, or a value that differs from the run's own)."""
    by_folder = {r.folder.resolve(): r for r in runs}
    kept = []
    for name, contents in comparisons:
        records = comparison_records(contents)
        folder = (results_dir / name).parent.resolve()
        owners = {model: by_folder.get(folder / model) for model in records or {}}
        if not records or any(run is None for run in owners.values()) or any(
                key in run.metrics and run.metrics[key] != value
                for model, run in owners.items() if run is not None
                for key, value in records[model].items()):
            kept.append((name, contents))
            continue
        for model, run in owners.items():
            if run is not None:
                for key, value in records[model].items():
                    run.metrics.setdefault(key, value)
    return kept


# ----------------------------------------------------------------------------- the reading

def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def points(x: float) -> str:
    return f"{100 * abs(x):.1f} percentage points"


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def better(name: str) -> int:
    """+1 when a higher value of the metric is better, -1 when lower is, 0 when neither."""
    lowered = name.lower()
    if any(part in lowered for part in ("seconds", "epochs", "parameters", "distance")):
        return 0
    if any(part in lowered for part in HIGHER_IS_BETTER):
        return 1
    if any(part in lowered for part in LOWER_IS_BETTER):
        return -1
    return 0


def is_number(value: Any) -> TypeGuard[float]:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def ranked(runs: list[Run], metric: str) -> list[Run]:
    """Runs that report metric, best first."""
    having = [r for r in runs if is_number(r.metrics.get(metric))]
    direction = better(metric) or 1
    return sorted(having, key=lambda r: -direction * r.metrics[metric])


@dataclass(frozen=True)
class Measure:
    """A measure of how well embeddings separate the classes, and how noisy it is."""

    key: str
    label: str
    meaning: str
    percent: bool  # an accuracy: shown in percent, its noise binomial
    # a bound on the spread of one test image's contribution (silhouette per image lies in
    # [-1, 1], std at most 1; pair AUC is a mean of 0s and 1s, std at most 0.5)
    spread: float = 0.0


MEASURES = (
    Measure("knn_accuracy", "kNN accuracy",
            "a vote of each test image's 20 nearest training images", percent=True),
    Measure("linear_probe_accuracy", "linear probe accuracy",
            "a linear classifier on the frozen embeddings", percent=True),
    Measure("silhouette", "silhouette",
            "1 means tight, well-separated classes; 0 means they overlap", percent=False,
            spread=1.0),
    Measure("pair_auc", "pair AUC",
            "how often a same-class pair of test images lies closer than a pair of two "
            "classes; 0.5 is chance", percent=False, spread=0.5),
)
SILHOUETTE_SAMPLE = 2000  # the silhouette is measured on at most this many test images


def shown(measure: Measure, value: float) -> str:
    return percent(value) if measure.percent else f"{value:.2f}"


def gap_text(measure: Measure, gap: float) -> str:
    return points(gap) if measure.percent else f"{abs(gap):.2f}"


def noise(measure: Measure, first: Run, second: Run) -> tuple[float, int] | None:
    """Two standard errors of the difference between two runs' values of measure, and the
    number of test images it rests on; None where that number is not known. Accuracies:
    binomial. Silhouette and pair AUC: a bound from the spread of one image's contribution,
    so a gap inside it is called a tie, never a difference it cannot show."""
    n = min(first.test_count or 0, second.test_count or 0)
    if n < 1:
        return None
    if measure.percent:
        p, q = first.metrics[measure.key], second.metrics[measure.key]
        return 2 * math.sqrt((p * (1 - p) + q * (1 - q)) / n), n
    if measure.key == "silhouette":
        n = min(n, SILHOUETTE_SAMPLE)
    return 2 * measure.spread * math.sqrt(2 / n), n


@dataclass
class Verdict:
    """One measure over the runs: their order, and whether the top two differ."""

    measure: Measure
    order: list[Run]
    differs: bool | None  # None: the noise is unknown
    noise: tuple[float, int] | None

    @property
    def gap(self) -> float:
        return self.order[0].metrics[self.measure.key] - self.order[1].metrics[self.measure.key]

    def sentence(self) -> str:
        m = self.measure
        values = ", ".join(f"{r.name} {shown(m, r.metrics[m.key])}" for r in self.order[:2])
        if len(self.order) > 2:
            values += f"; last is {self.order[-1].name} ({shown(m, self.order[-1].metrics[m.key])})"
        label = m.label if m.label.startswith("kNN") else m.label[0].upper() + m.label[1:]
        text = f"{label} ({m.meaning}): {values}"
        if self.noise is None and self.differs is False:
            return text + ": tied, the same value."
        if self.noise is None:
            return (text + f"; a gap of {gap_text(m, self.gap)}, which cannot be weighed "
                    "against the noise: the number of test images is unknown.")
        size, n = self.noise
        about = f"about ±{100 * size:.1f} points" if m.percent else f"up to ±{size:.2f}"
        noise_text = f"the noise of {n:,} test images ({about})"
        if self.differs:
            return (text + f". {self.order[0].name} leads by {gap_text(m, self.gap)}, more "
                    f"than {noise_text}.")
        return text + f": tied, the gap of {gap_text(m, self.gap)} is within {noise_text}."


def verdicts(runs: list[Run]) -> list[Verdict]:
    """Each measure that two or more runs report, with the top two weighed against noise."""
    found = []
    for measure in MEASURES:
        order = ranked(runs, measure.key)
        if len(order) < 2:
            continue
        size = noise(measure, order[0], order[1])
        gap = abs(order[0].metrics[measure.key] - order[1].metrics[measure.key])
        differs = None if size is None else gap > size[0]
        if gap == 0:
            differs = False
        found.append(Verdict(measure, order, differs, size))
    return found


def names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def headline(found: list[Verdict]) -> str:
    """Which model separates the classes best, by the measures that tell the models apart;
    the measures that tie are named as ties, and a tie is never a win."""
    differ = [v for v in found if v.differs]
    tied = [v.measure.label for v in found if v.differs is False]
    who = "they" if all(len(v.order) == 2 for v in found) else "the top two"
    ties = f"by {names(tied)} {who} are tied within the noise" if tied else ""
    if not differ:
        return (f"No model separates the classes measurably better: {ties}." if tied else "")
    leaders: dict[str, list[str]] = {}
    for v in differ:
        leaders.setdefault(v.order[0].name, []).append(v.measure.label)
    if len(leaders) == 1:
        (leader, labels), = leaders.items()
        text = f"{leader} separates the classes best: it leads on {names(labels)}"
    else:
        text = "The measures disagree: " + "; ".join(
            f"{leader} leads on {names(labels)}" for leader, labels in leaders.items())
    return text + (f"; {ties}." if ties else ".")


def read_embeddings(runs: list[Run]) -> list[str]:
    """Sentences about which embedding separates the classes best: the measures that tell
    the models apart first, then those on which they tie."""
    knn = ranked(runs, "knn_accuracy")
    if not knn:
        return []
    lines = []
    best = knn[0]
    chance = (f" Guessing would be right {percent(1 / best.num_classes)} of the time."
              if best.num_classes else "")
    if len(knn) == 1:
        probe = best.metrics.get("linear_probe_accuracy")
        text = (f"{best.name} puts {percent(best.metrics['knn_accuracy'])} of test images in "
                "the right class by a vote of their 20 nearest training images (kNN accuracy)")
        if is_number(probe):
            text += f", and a linear classifier on its embeddings gets {percent(probe)}"
        lines.append(text + "." + chance)
        silhouette = best.metrics.get("silhouette")
        if is_number(silhouette):
            lines.append(f"Its class clusters have a silhouette of {silhouette:.2f} "
                         f"({MEASURES[2].meaning}).")
    else:
        found = verdicts(runs)
        first = headline(found)
        lines += [first] if first else []
        # the measures that tell the models apart first, then the ties, then the unweighed
        order = sorted(found, key=lambda v: {True: 0, False: 1, None: 2}[v.differs])
        lines += [v.sentence() for v in order]
        if chance:
            lines.append(chance.strip())
    pixels = next((r.metrics["raw_pixel_knn_accuracy"] for r in runs
                   if is_number(r.metrics.get("raw_pixel_knn_accuracy"))), None)
    if pixels is not None:
        beating = [r.name for r in knn if r.metrics["knn_accuracy"] > pixels]
        lines.append(f"kNN on raw pixels gets {percent(pixels)}; "
                     + (f"{', '.join(beating)} beat{'s' if len(beating) == 1 else ''} "
                        "that baseline." if beating else "no embedding beats that baseline."))
    return lines


def read_reconstructions(runs: list[Run]) -> list[str]:
    psnr = ranked(runs, "reconstruction_psnr")
    if not psnr:
        return []
    best = psnr[0]
    if len(psnr) == 1:
        return [f"{best.name} reconstructs test images at "
                f"{best.metrics['reconstruction_psnr']:.1f} dB PSNR (each 3 dB more halves "
                "the squared error)."]
    runner = psnr[1]
    return [f"{best.name} reconstructs images most faithfully: "
            f"{best.metrics['reconstruction_psnr']:.1f} dB PSNR against "
            f"{runner.metrics['reconstruction_psnr']:.1f} dB for {runner.name} "
            "(each 3 dB more halves the squared error)."]


def read_other(runs: list[Run]) -> list[str]:
    """For runs without embedding metrics (e.g. separation): the first metric with a
    direction that several of them share decides which did best."""
    if len(runs) < 2:
        return []
    for metric in runs[0].metrics:
        if better(metric) == 0:
            continue
        order = ranked(runs, metric)
        if len(order) < 2:
            continue
        best, runner = order[0], order[1]
        return [f"{best.name} scores best on {metric.replace('_', ' ')}: "
                f"{number(best.metrics[metric])} against {number(runner.metrics[metric])} "
                f"for {runner.name} ({'higher' if better(metric) > 0 else 'lower'} is better)."]
    return []


def describe_class_pairs(table: dict[str, Any]) -> str:
    """'it gains least on cat + dog (+2.10 dB over returning the mixture, 17.30 dB) and most
    on ...', from a separator's test_psnr_by_class_pair."""
    names = table["classes"]
    cells = [(gain, table["psnr"][i][j], names[j], names[i])
             for i, row in enumerate(table["gain_over_mixture"])
             for j, gain in enumerate(row[:i + 1]) if gain is not None]
    (low, low_psnr, *hard), (high, high_psnr, *easy) = min(cells), max(cells)
    return (f"it gains least on {' + '.join(hard)} ({low:+.2f} dB over returning the "
            f"mixture, {low_psnr:.2f} dB) and most on {' + '.join(easy)} ({high:+.2f} dB, "
            f"{high_psnr:.2f} dB)")


def read_separations(runs: list[Run]) -> list[str]:
    """For each separator: its PSNR over returning the mixture, and the class pairs it
    separates worst and best."""
    lines = []
    for run in runs:
        psnr, baseline = run.metrics.get("test_psnr"), run.metrics.get("baseline_average_psnr")
        if not (is_number(psnr) and is_number(baseline)):
            continue
        text = (f"{run.name} separates the test mixtures at {psnr:.2f} dB PSNR, "
                f"{psnr - baseline:+.2f} dB over returning the mixture ({baseline:.2f} dB).")
        if isinstance(run.metrics.get("test_psnr_by_class_pair"), dict):
            pairs = describe_class_pairs(run.metrics["test_psnr_by_class_pair"])
            text += f" By class pair, {pairs}."
        lines.append(text)
    return lines


def reading(runs: list[Run]) -> list[str]:
    """A short plain-language reading of the numbers, one sentence or two per point."""
    if not runs:
        return ["No results yet."]
    embedding = [r for r in runs if is_number(r.metrics.get("knn_accuracy"))]
    lines = read_embeddings(embedding) + read_reconstructions(embedding)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run not in embedding:
            groups.setdefault(run.group, []).append(run)
    for members in groups.values():
        lines += read_other(members)
    lines += read_separations(runs)
    for run in runs:
        if run.metrics.get("stopped_by_time_budget") is True:
            lines.append(f"{run.name} was stopped by its time budget after "
                         f"{run.metrics.get('epochs', '?')} epochs; longer training may "
                         "improve it.")
    return lines or ["The runs report no metric that can be compared."]


# ----------------------------------------------------------------------------- HTML pieces

def escape(value: Any) -> str:
    return html.escape(str(value))


def cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return escape(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return escape(f"{value:.4g}") if math.isfinite(value) else escape(value)
    if isinstance(value, dict) and all(fits_a_cell(v) for v in value.values()):
        return ", ".join(f"{escape(k)}: {cell(v)}" for k, v in value.items())
    if isinstance(value, dict | list):
        return escape(json.dumps(value))
    return escape(value)


def fits_a_cell(value: Any) -> bool:
    """Scalars and small dicts of scalars; tables and curves (lists, nested dicts) are left
    to metrics.json and the figures, since one would stretch the table past the page."""
    if isinstance(value, dict):
        return len(value) <= 8 and not any(isinstance(v, dict | list) for v in value.values())
    return not isinstance(value, list)


def metric_order(runs: list[Run]) -> list[str]:
    keys: list[str] = [k for k in LEADING_METRICS if any(k in r.metrics for r in runs)]
    for run in runs:
        keys += [k for k in run.metrics if k not in keys]
    return [k for k in keys if all(fits_a_cell(r.metrics.get(k)) for r in runs)]


def metrics_table(runs: list[Run]) -> str:
    """Rows: metrics; columns: runs; the best value of each comparable row in bold."""
    head = "".join(f"<th>{escape(r.name)}</th>" for r in runs)
    rows = []
    for key in metric_order(runs):
        values = [r.metrics.get(key) for r in runs]
        best = None
        direction = better(key)
        numbers = [v for v in values if is_number(v)]
        if direction and len(numbers) > 1 and len(set(numbers)) > 1:
            best = max(numbers) if direction > 0 else min(numbers)
        cells = "".join(
            "<td>—</td>" if key not in r.metrics else
            f"<td class=\"best\">{cell(v)}</td>" if best is not None and v == best else
            f"<td>{cell(v)}</td>" for r, v in zip(runs, values))
        hint = {1: " ↑", -1: " ↓"}.get(direction, "")
        rows.append(f"<tr><th>{escape(key.replace('_', ' '))}{hint}</th>{cells}</tr>")
    return (f"<table class=\"metrics\"><thead><tr><th>metric</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def config_table(runs: list[Run]) -> str:
    """Rows: options; columns: runs; rows whose values differ between runs are marked."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys]
    head = "".join(f"<th>{escape(r.name)}</th>" for r in runs)
    rows = []
    for key in keys + ["code_version"]:
        values = [r.code_version if key == "code_version" else r.config.get(key, "—")
                  for r in runs]
        differs = len({json.dumps(v) for v in values}) > 1
        cells = "".join(f"<td>{cell(v)}</td>" for v in values)
        marker = ' class="differs"' if differs else ""
        rows.append(f"<tr{marker}><th>{escape(key)}</th>{cells}</tr>")
    return (f"<table class=\"config\"><thead><tr><th>option</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def generic_table(contents: Any) -> str:
    """A comparison.json of any shape: list of records, dict of records, flat dict, or JSON."""
    records: list[tuple[str, dict[str, Any]]] = []
    if isinstance(contents, list) and contents and all(isinstance(r, dict) for r in contents):
        records = [(str(i + 1), r) for i, r in enumerate(contents)]
    elif isinstance(contents, dict) and contents and all(
            isinstance(v, dict) for v in contents.values()):
        records = [(str(k), v) for k, v in contents.items()]
    elif isinstance(contents, dict) and contents and not any(
            isinstance(v, dict | list) for v in contents.values()):
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{cell(v)}</td></tr>"
                       for k, v in contents.items())
        return f"<table class=\"metrics\"><tbody>{rows}</tbody></table>"
    elif isinstance(contents, dict) and contents:  # e.g. {"dataset": ..., "models": {...}}
        nested = {k: v for k, v in contents.items() if isinstance(v, dict | list)}
        flat = {k: v for k, v in contents.items() if k not in nested}
        return (generic_table(flat) if flat else "") + "".join(
            f"<h4>{escape(str(k))}</h4>{generic_table(v)}" for k, v in nested.items())
    if not records:
        return f"<pre>{escape(json.dumps(contents, indent=2))}</pre>"
    columns: list[str] = []
    for _, record in records:
        columns += [k for k in record if k not in columns]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = "".join("<tr><th>" + escape(name) + "</th>" + "".join(
        f"<td>{cell(r[c]) if c in r else '—'}</td>" for c in columns) + "</tr>"
        for name, r in records)
    return (f"<table class=\"metrics\"><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def data_uri(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def figure_caption(path: Path, run_name: str) -> str:
    stem = path.stem
    prefix = Path(run_name).name + "_"
    return (stem.removeprefix(prefix) if stem.startswith(prefix) else stem).replace("_", " ")


def figures_html(results_dir: Path, runs: list[Run]) -> str:
    """Every PNG under results_dir, grouped under the run folder that holds it."""
    folders = {r.folder.resolve(): r for r in runs}
    grouped: dict[str, list[Path]] = {}
    for path in sorted(results_dir.rglob("*.png")):
        if any(p.startswith(".") for p in path.relative_to(results_dir).parts):
            continue
        owner = next((folders[f] for f in [path.parent.resolve(), *path.parent.resolve().parents]
                      if f in folders), None)
        name = owner.name if owner else (path.parent.relative_to(results_dir).as_posix()
                                         if path.parent != results_dir else "overview")
        grouped.setdefault(name, []).append(path)
    order = [r.name for r in runs if r.name in grouped]
    order += [n for n in grouped if n not in order]
    parts = []
    for name in order:
        images = "".join(
            f"<figure><img src=\"{data_uri(p)}\" alt=\"{escape(p.name)}\">"
            f"<figcaption>{escape(figure_caption(p, name))}</figcaption></figure>"
            for p in grouped[name])
        parts.append(f"<h3>{escape(name)}</h3><div class=\"figures\">{images}</div>")
    return "".join(parts) or "<p>No figures.</p>"


def asset(name: str) -> str:
    return (resources.files("latentlab") / "assets" / name).read_text()


def script_json(data: Any) -> str:
    """JSON safe to place inside a <script> element."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def build_html(results_dir: Path, runs: list[Run], comparisons: list[tuple[str, Any]],
               explorer: dict[str, Any] | None) -> str:
    title = f"latentlab report: {results_dir.resolve().name}"
    created = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    datasets = sorted({str(r.config.get("dataset")) for r in runs if r.config.get("dataset")})
    versions = sorted({r.code_version for r in runs if r.code_version})
    summary = "".join(f"<li>{escape(line)}</li>" for line in reading(runs))
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    tables = "".join(
        (f"<h3>{escape(group)}</h3>" if group else "") + metrics_table(members)
        for group, members in groups.items())
    comparison_html = "".join(f"<h3>{escape(name)}</h3>{generic_table(contents)}"
                              for name, contents in comparisons)
    if explorer:
        explorer_html = (
            "<section id=\"explorer-section\"><h2>Embedding explorer</h2>"
            "<p class=\"hint\">Each dot is a test image placed by t-SNE from its embedding; "
            "colour is its class. Hover to see the image, click to list its nearest "
            "neighbours in the full embedding space. Scroll to zoom, drag to pan.</p>"
            + asset("explorer.html") +
            f"<script id=\"explorer-data\" type=\"application/json\">{script_json(explorer)}"
            f"</script><script>{asset('explorer.js')}</script></section>")
    else:
        explorer_html = ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{asset('report.css')}</style></head>
<body><header><h1>{escape(title)}</h1>
<p class="meta">{len(runs)} model{'s' if len(runs) != 1 else ''} · dataset
{escape(', '.join(datasets) or 'unknown')} · latentlab {escape(', '.join(versions) or '?')} ·
written {created}</p></header>
<section id="reading"><h2>What the numbers say</h2><ul>{summary}</ul></section>
{explorer_html}
<section id="metrics"><h2>Metrics</h2>
<p class="hint">↑ higher is better, ↓ lower is better; the best value of each row is in bold.
Tables and curves (PSNR by class pair, PSNR against training time, ...) are in each run's
metrics.json and figures.</p>
{tables}{comparison_html}</section>
<section id="figures"><h2>Figures</h2>{figures_html(results_dir, runs)}</section>
<section id="configuration"><h2>Configuration</h2>
<p class="hint">Options that differ between models are highlighted.</p>{config_table(runs)}
</section></body></html>
"""


def write_report(results_dir: str | Path) -> Path:
    """Write results_dir/report.html for every run found under results_dir; return its path."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        state = "is a file" if results_dir.exists() else "does not exist"
        raise UserError(f"results folder {results_dir} {state}; give the --out folder of a "
                        "training run")
    runs = find_runs(results_dir)
    if not runs:
        raise UserError(f"no results found under {results_dir} (no metrics.json); train a "
                        f"model first, e.g. latentlab train autoencoder --out {results_dir}")
    explorer = explorer_data([(r.name, r.folder, r.config) for r in runs])
    comparisons = fold_comparisons(results_dir, runs, find_comparisons(results_dir))
    page = build_html(results_dir, runs, comparisons, explorer)
    path = results_dir / REPORT_NAME
    write_text_atomic(page, path)
    return path


def show_class_pairs(metrics: dict[str, Any], model_name: str, path: Path) -> bool:
    """Print the class pairs a separator gains least and most on, and draw the class-pair
    heat maps at path, when the metrics have them (labelled test images); whether it drew."""
    if "test_psnr_by_class_pair" not in metrics:
        return False
    table = metrics["test_psnr_by_class_pair"]
    print(f"by class pair, {describe_class_pairs(table)}")
    plot_class_pair_psnr(table, path,
                         f"{model_name}: test mixtures by the classes of their two images")
    return True


def write_comparison(folder: Path) -> None:
    """comparison.json and separation_comparison.png over every model run under folder."""
    rows = []
    for path in sorted(folder.glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "test_psnr" not in metrics:
            continue
        rows.append({key: metrics.get(key) for key in (
            "model", "protocol", "dataset", "test_psnr", "test_ssim", "test_mse",
            "baseline_average_psnr", "baseline_average_ssim", "num_parameters", "train_seconds",
            "epochs", "separation_seconds", "test_mixtures")})
    if rows:
        write_json_atomic(rows, folder / "comparison.json")
        plot_separation_comparison(rows, folder / "separation_comparison.png")
