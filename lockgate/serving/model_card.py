"""Where a served model keeps its model card, and reading it: the service
answers GET /model_card from the Bento model's `card/` folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CARD_FOLDER = "card"
CARD_MARKDOWN = "model_card.md"
CARD_HTML = "model_card.html"


@dataclass(frozen=True)
class ServedCard:
    html: bytes
    markdown: bytes


def read_card(model_folder: str | Path) -> ServedCard | None:
    """The card shipped with a Bento model, or None for a model packaged
    without one (explanations off, or packaged before cards)."""
    folder = Path(model_folder) / CARD_FOLDER
    if not (folder / CARD_HTML).is_file() or not (folder / CARD_MARKDOWN).is_file():
        return None
    return ServedCard(html=(folder / CARD_HTML).read_bytes(), markdown=(folder / CARD_MARKDOWN).read_bytes())
