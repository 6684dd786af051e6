"""The HTML pieces: the page's style, tables, figures and images inlined as data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

from defectgen.report.values import _esc, _na

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.9em; padding-top: 0.3em; }
td.better { background: #e3f4e8; } td.worse { background: #fbe4e1; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.na { color: #8a5a00; font-style: italic; }
.warning { background: #fff4d6; border-left: 4px solid #e6a700; padding: 0.4em 0.8em; }
.claim { border: 2px solid #999; padding: 0.2em 1em; margin: 1em 0; }
.claim.met { border-color: #2e7d32; background: #f1f9f2; }
.claim.not-met { border-color: #c62828; background: #fdf2f1; }
.verdict { font-size: 1.15em; }
details { margin: 0.8em 0; } code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _table(header: Iterable[str], rows: list[str], caption: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    caption_html = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f"<table>{caption_html}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure_html(figure: Figure, alt: str, caption: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return _img_html(_data_uri(buffer.getvalue(), "image/png"), alt, caption)


def _img_html(uri: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{_esc(alt)}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _inlined_figure(eval_dir: Path, relative: object, title: str) -> str:
    """A figure file under eval_dir, inlined; otherwise a note saying why it is not shown."""
    if not isinstance(relative, str) or not relative:
        return _na(f"{title}: not available (not recorded in results.json).")
    try:
        root = eval_dir.resolve()
        path = (root / relative).resolve()
    except (RuntimeError, OSError):  # a symbolic link that loops
        return _na(f"{title}: not available ({relative} is a link that cannot be followed).")
    if not path.is_relative_to(root):
        return _na(f"{title}: not available ({relative} is outside the evaluation folder).")
    if not path.is_file():
        return _na(f"{title}: not available ({relative} not found).")
    data = path.read_bytes()
    mime = _image_mime(data)
    if mime is None:
        return _na(f"{title}: not available ({relative} is not a PNG or JPEG).")
    return _img_html(_data_uri(data, mime), title, f"{title} ({relative})")


def _image_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None
