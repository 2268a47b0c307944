"""Model families. Each is one module holding what varies with the family:
how its data becomes model input, what validation expects of it, the input
end of its model, its metrics and gate rule (through its task), which exports
it offers and how the service reads its requests. `tables` holds the data
contract that table classification and regression share.

Adding a family means one new module and one line in `FAMILIES`.
"""

from __future__ import annotations

from lockgate.families.base import Family, RequestError
from lockgate.families.image import ImageFamily
from lockgate.families.regression import RegressionFamily
from lockgate.families.tabular import TabularFamily
from lockgate.families.text import TextFamily

FAMILIES: dict[str, Family] = {f.name: f for f in (ImageFamily(), TextFamily(), TabularFamily(), RegressionFamily())}


def family_for(name: str) -> Family:
    """The family called `name`, as stored in a snapshot, a champion or a Bento."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


__all__ = ["FAMILIES", "Family", "RequestError", "family_for"]
