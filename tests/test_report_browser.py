"""The report as a person sees it: opened in headless Chromium, hovered and clicked.

Needs Debian's chromium (see CI_APT.txt); skipped with a reason where it is absent."""

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from latentlab.data import load_dataset
from latentlab.explorer import nearest_neighbours
from latentlab.report import write_report

from chromium import Browser, find_chromium
from resultfiles import synthetic_run

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
SCREENSHOT_COPY = Path("/tmp/report_screenshot.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    opened = Browser(CHROMIUM, width=1400, height=1000)
    yield opened
    opened.close()


def explorer_json(page: Path) -> dict:
    text = page.read_text()
    return json.loads(re.search(r'<script id="explorer-data" type="application/json">(.*?)'
                                r"</script>", text, re.S).group(1))


def hover_and_click(browser: Browser, point: int) -> dict:
    """Move the mouse onto a point, press and release there; return what the page shows."""
    position = browser.evaluate(f"latentlabExplorer.screenPosition({point})")
    browser.mouse("mouseMoved", position["x"], position["y"])
    hovered = browser.evaluate("""(() => {
        const tip = document.getElementById('explorer-tooltip');
        const canvas = document.getElementById('explorer-tooltip-image');
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        return {visible: !tip.hidden && tip.offsetWidth > 0, drawn: canvas.dataset.drawn,
                testIndex: Number(canvas.dataset.testIndex), size: canvas.width,
                label: document.getElementById('explorer-tooltip-label').textContent,
                red: Array.from(pixels.data.filter((_, i) => i % 4 === 0)),
                state: latentlabExplorer.state()};
    })()""")
    browser.mouse("mousePressed", position["x"], position["y"])
    browser.mouse("mouseReleased", position["x"], position["y"])
    clicked = browser.evaluate("""Array.from(
        document.querySelectorAll('#explorer-neighbours li.neighbour')).map(li => ({
            point: Number(li.dataset.point), drawn: li.querySelector('canvas').dataset.drawn,
            text: li.textContent}))""")
    # move a little so the tooltip stays up for the screenshot
    browser.mouse("mouseMoved", position["x"] + 1, position["y"])
    return {"hovered": hovered, "neighbours": clicked,
            "state": browser.evaluate("latentlabExplorer.state()")}


def test_report_opens_hovers_and_clicks_in_chromium(digits_results: Path, tmp_path: Path,
                                                    browser: Browser) -> None:
    results = shutil.copytree(digits_results, tmp_path / "results")
    page = write_report(results)
    assert page.stat().st_size < 5_000_000
    browser.open(page)
    # every figure and every thumbnail sprite has loaded
    images = browser.evaluate("""latentlabExplorer.ready.then(() => Array.from(document.images)
        .map(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/png')))""")
    assert images == [True] * 6
    assert browser.evaluate("latentlabExplorer.sprites()") == [True, True]
    assert browser.evaluate("latentlabExplorer.models()") == ["autoencoder", "supcon"]
    browser.evaluate("document.getElementById('explorer-section').scrollIntoView()")

    data = explorer_json(page)["models"][0]
    digits = load_dataset("digits")
    point = 17
    seen = hover_and_click(browser, point)
    hovered = seen["hovered"]
    # hovering shows that point's own image, pixel for pixel (8x8 digit drawn at 96x96)
    assert hovered["visible"] and hovered["drawn"] == "image"
    assert hovered["state"]["hovered"] == point
    test_index = data["testIndex"][point]
    assert hovered["testIndex"] == test_index
    assert hovered["label"] == f"{int(digits.test_labels[test_index])} · test image {test_index}"
    red = np.array(hovered["red"]).reshape(96, 96)[6::12, 6::12]
    assert (red == digits.test_images[test_index, 0].numpy()).all()
    # clicking lists the point's 8 nearest neighbours in the full embedding space
    with np.load(results / "autoencoder" / "test_embeddings.npz") as saved:
        expected = nearest_neighbours(saved["embeddings"][saved["tsne_index"]], 8)[0][point]
    assert [n["point"] for n in seen["neighbours"]] == expected.tolist()
    assert all(n["drawn"] == "image" for n in seen["neighbours"])
    assert seen["state"]["selected"] == point

    screenshot = tmp_path / "report.png"
    browser.screenshot(screenshot)
    assert screenshot.stat().st_size > 20_000
    try:
        shutil.copy(screenshot, SCREENSHOT_COPY)
    except OSError:
        pass

    # the model switcher: supcon was tested on other images, so the selection is dropped
    browser.evaluate("""(() => { const s = document.getElementById('explorer-model');
        s.value = '1'; s.dispatchEvent(new Event('change')); })()""")
    assert browser.evaluate("latentlabExplorer.state()") == {
        "model": 1, "hovered": -1, "selected": -1, "points": 200, "scale": 1}
    seen = hover_and_click(browser, 3)
    assert seen["state"]["selected"] == 3 and len(seen["neighbours"]) == 8
    assert not [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]


def test_explorer_stays_responsive_with_10000_points(tmp_path: Path, browser: Browser) -> None:
    synthetic_run(tmp_path, "big", n=10_000)
    page = write_report(tmp_path)
    assert page.stat().st_size < 5_000_000
    browser.open(page)
    timing = browser.evaluate("latentlabExplorer.benchmark(5)")
    # a full redraw well inside one frame at 10 fps, and hit tests far under a millisecond
    assert timing["drawMs"] < 100 and timing["hitMs"] < 1, timing
    browser.evaluate("document.getElementById('explorer-section').scrollIntoView()")
    seen = hover_and_click(browser, 1234)
    assert seen["hovered"]["visible"] and seen["hovered"]["drawn"] == "no-image"
    assert seen["state"]["selected"] >= 0 and len(seen["neighbours"]) == 8
    assert not [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
