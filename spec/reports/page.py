"""What the reports' self-contained HTML pages share (the spec report and the class report): their style,
and a figure with its PNG inline."""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.passed{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}
.skipped,.not-run{color:#777}td.rate{text-align:right}li{margin:.3em 0}.count{font-weight:bold}
figure{margin:2em 0}img{max-width:100%}figcaption{font-size:14px;color:#444}"""


def figure(path: Path, caption: str) -> str:
    """A figure whose PNG is inline, as a data: URI: the page refers to nothing outside it."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip
