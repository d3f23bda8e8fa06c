"""Plain-text tables: borderless, left-aligned, one space between columns.

Cells longer than :data:`MAX_CELL` characters are cut to that many plus ``...``
unless ``full`` is set. :func:`render_format` lays rows out after a parsed
``--format`` (see :mod:`crane_cli.fmtspec`).
"""

from __future__ import annotations

from collections.abc import Sequence

from crane_cli.fmtspec import Item

MAX_CELL = 30


def cut(cell: str, full: bool = False) -> str:
    """Cut ``cell`` to :data:`MAX_CELL` characters plus ``...`` unless ``full``."""
    if full or len(cell) <= MAX_CELL:
        return cell
    return cell[:MAX_CELL] + "..."


def render_table(headers: Sequence[str] | None, rows: Sequence[Sequence[str]], full: bool = False) -> str:
    """Render rows (and a header row unless ``headers`` is None) as aligned text, one line per row.

    All rows must have the same number of cells as the header.
    """
    if full:
        body = [list(r) for r in rows]
    else:
        body = [[c if len(c) <= MAX_CELL else c[:MAX_CELL] + "..." for c in r] for r in rows]
    lines_src = ([list(headers)] if headers is not None else []) + body
    if not lines_src:
        return ""
    widths = [max(map(len, col)) for col in zip(*lines_src, strict=True)]
    fmt = " ".join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"])
    return "\n".join([fmt.format(*r).rstrip() for r in lines_src])


def _fit(cell: str, item: Item, natural: int, is_last: bool) -> str:
    if item.width is not None:
        cell = cell[:item.width]
        return cell.rjust(item.width) if item.right else cell.ljust(item.width)
    if item.right:
        return cell.rjust(natural)
    return cell if is_last else cell.ljust(natural)


def render_format(layout: Sequence[str | Item], headers: Sequence[str] | None, rows: Sequence[Sequence[str]],
                  full: bool = False) -> str:
    """Render rows after a parsed format.

    ``rows`` hold one cell per :class:`Item` of ``layout`` (in order) and
    ``headers`` one title per item. Literal text is repeated on every line. Items
    without a width are padded to the widest cell of their column, and followed by
    one space when the next item comes right after them (``%j%n``).
    """
    items = [x for x in layout if isinstance(x, Item)]
    body = [[cut(c, full) for c in row] for row in rows]
    src = ([list(headers)] if headers is not None else []) + body
    natural = [max((len(r[i]) for r in src), default=0) for i in range(len(items))]
    last_item = len(layout) - 1 - next(i for i, x in enumerate(reversed(layout)) if isinstance(x, Item))
    out = []
    for r in src:
        parts = []
        k = 0
        for pos, x in enumerate(layout):
            if isinstance(x, Item):
                parts.append(_fit(r[k], x, natural[k], pos == last_item and pos == len(layout) - 1))
                if x.width is None and pos + 1 < len(layout) and isinstance(layout[pos + 1], Item):
                    parts.append(" ")
                k += 1
            else:
                parts.append(x)
        out.append("".join(parts).rstrip())
    return "\n".join(out)
