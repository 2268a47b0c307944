"""Model families. Each is one module: which columns its data gives the
model and how, what validation expects of that data, and the input end of
its model, paired with what it predicts (lockgate.families.targets) and the kind of
request its service reads (lockgate.serving.requests).

Adding a family means one new module and one line in `FAMILIES`; the names
that settings, the command line and deployments offer come from here.
"""

from __future__ import annotations

from lockgate.families.base import Family
from lockgate.families.image import ImageFamily
from lockgate.families.regression import RegressionFamily
from lockgate.families.tabular import TableFamily, TabularFamily
from lockgate.families.text import TextFamily

FAMILIES: dict[str, Family] = {f.name: f for f in (ImageFamily(), TextFamily(), TabularFamily(), RegressionFamily())}


def family_for(name: str) -> Family:
    """The family called `name`, as stored in a snapshot, a champion or a Bento."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


__all__ = ["FAMILIES", "Family", "TableFamily", "family_for"]
