"""Turning what a view returned into something a browser can show.

A view may return HTML (a string), or a matplotlib figure or PNG bytes: those are saved
to the view's module file store (expiring after ``IMAGE_LIFETIME``) and replaced by an
``<img>`` tag linking them, so authors never handle files for a plot.
"""

from __future__ import annotations

import html
import io
import uuid
from typing import Any

from tasks.storage.fs import FileStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_LIFETIME = 3600


def present_view_result(result: Any, view_name: str, fs: FileStore) -> Any:
    """HTML for a view result: figures and PNG bytes become an ``<img>`` of a stored file."""
    png = _png_of(result)
    if png is None:
        return result
    filename = f"views/{view_name}-{uuid.uuid4().hex}.png"
    with fs.open(filename, "wb") as f:
        f.write(png)
    fs.expire(filename, IMAGE_LIFETIME)
    return f'<img src="{html.escape(fs.get_url(filename))}" alt="{html.escape(view_name)}">'


def _png_of(result: Any) -> bytes | None:
    if isinstance(result, (bytes, bytearray)) and bytes(result[:8]) == PNG_SIGNATURE:
        return bytes(result)
    if type(result).__module__.startswith("matplotlib") and hasattr(result, "savefig"):
        buffer = io.BytesIO()
        result.savefig(buffer, format="png", bbox_inches="tight")
        _close_figure(result)
        return buffer.getvalue()
    return None


def _close_figure(figure: Any) -> None:
    """Free a pyplot figure: workers render many and pyplot keeps every open one."""
    if getattr(figure.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
