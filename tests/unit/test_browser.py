"""tests/browser.py renders a real page: a heading and a table, not a blank image."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.browser import BrowserError, browser_available, screenshot

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Gate report</title>
<style>body { font-family: sans-serif; margin: 40px; } td, th { border: 1px solid #333; padding: 8px; }</style>
</head><body>
<h1>Gate report: challenger promoted</h1>
<table>
<tr><th>model</th><th>accuracy</th></tr>
<tr><td>champion</td><td>0.9512</td></tr>
<tr><td>challenger</td><td>0.9712</td></tr>
</table>
</body></html>
"""


@pytest.fixture(scope="module")
def browser() -> None:
    """Fails where the browser cannot be had: it installs from the npm
    registry, as the rest installs from PyPI, so its absence is a fault."""
    reason = browser_available()
    if reason:
        pytest.fail(reason)


def ink(png: Path) -> tuple[int, int]:
    """How many pixels are dark (text, borders), and how many distinct colours there are."""
    with Image.open(png) as image:
        grey = image.convert("L")
        dark = sum(grey.histogram()[:128])
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 24) or [])
    return dark, colours


def test_screenshot_renders_heading_and_table(browser, tmp_path):
    html = tmp_path / "card.html"
    html.write_text(PAGE, encoding="utf-8")
    png = screenshot(html, tmp_path / "card.png", width=800, height=600)

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 2_000 < len(data) < 5_000_000
    with Image.open(png) as image:
        assert image.size == (800, 600)
    dark, colours = ink(png)
    # Text and borders: thousands of dark pixels, antialiased into many greys.
    assert dark > 2_000, f"only {dark} dark pixels: the page rendered (nearly) blank"
    assert colours > 10


def test_blank_page_has_no_ink(browser, tmp_path):
    """The check above is not vacuous: an empty page gives one colour, no ink."""
    html = tmp_path / "blank.html"
    html.write_text("<!doctype html><html><body></body></html>", encoding="utf-8")
    png = screenshot(html, tmp_path / "blank.png", width=800, height=600)
    assert ink(png) == (0, 1)


def test_missing_page_is_a_clear_error(tmp_path):
    with pytest.raises(BrowserError, match="no such page"):
        screenshot(tmp_path / "nowhere.html", tmp_path / "nowhere.png")
