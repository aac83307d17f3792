"""Server-side SVG: the throughput chart, a workflow's timeline, a task graph, a tree.

Plain strings with every piece of text escaped; no JavaScript, nothing fetched.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from durable.store.reads import Throughput, TreeNode
from durable.ui.dag import DagView
from durable.ui.views import CallSpan, format_duration

STATE_COLOURS = {
    "SUCCESS": "#2e9e5b", "FAILURE": "#d64541", "RUNNING": "#2f80ed", "RETRYING": "#f2994a",
    "WAITING": "#f2c94c", "PAUSED": "#9b51e0", "CANCELLED": "#8a8a8a", "SKIPPED": "#bdbdbd",
    "PENDING": "#e0e0e0", "READY": "#a8c8f0",
}
FAMILY_COLOURS = {"step": "#2f80ed", "sleep": "#56ccf2", "signal": "#bb6bd9",
                  "child": "#27ae60", "value": "#828282", "event": "#f2c94c",
                  "state": "#f2c94c"}
_FONT = 'font-family="ui-monospace,monospace" font-size="11"'


def workflow_link(workflow_id: str, suffix: str = "") -> str:
    """The page of a workflow (ids may hold any character)."""
    return f"/w/{quote(workflow_id, safe='')}{suffix}"


def throughput_chart(buckets: list[Throughput], since: float, minutes: int = 60,
                     width: int = 720, height: int = 160) -> str:
    """Started, succeeded and failed workflows per minute, as grouped bars."""
    counts = {int((b.start - since) // 60): b for b in buckets}
    top = max([1] + [max(b.started, b.finished, b.failed) for b in buckets])
    plot_height = height - 30
    slot = width / minutes
    bar = max(1.0, slot / 3 - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="workflows per minute over the last hour">',
             f'<line x1="0" y1="{plot_height}" x2="{width}" y2="{plot_height}" stroke="#999"/>']
    for minute in range(minutes):
        bucket = counts.get(minute)
        if bucket is None:
            continue
        for offset, (value, colour, label) in enumerate((
                (bucket.started, "#2f80ed", "started"), (bucket.finished, "#2e9e5b", "finished"),
                (bucket.failed, "#d64541", "failed"))):
            if not value:
                continue
            h = max(1.0, plot_height * value / top)
            x = minute * slot + offset * (bar + 1)
            parts.append(f'<rect class="bar {label}" x="{x:.1f}" y="{plot_height - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{value} {label}, minute {minute - minutes}</title></rect>')
    parts.append(f'<text x="0" y="{height - 8}" {_FONT}>-60 min</text>')
    parts.append(f'<text x="{width - 30}" y="{height - 8}" {_FONT}>now</text>')
    parts.append(f'<text x="{width / 2 - 40:.0f}" y="{height - 8}" {_FONT}>max {top}/min</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline(spans: list[CallSpan], start: float, end: float, width: int = 900,
             fork_from: str | None = None) -> str:
    """One row per call: a bar from its start to its end (to ``end`` while open).

    With ``fork_from`` (a workflow page), each call's label links to that page with the
    fork form set to keep the calls before it.
    """
    row_height, label_width = 18, 260
    total = max(end - start, 1e-3)
    plot = width - label_width - 10
    height = row_height * len(spans) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="timeline of {len(spans)} calls">']
    for index, span in enumerate(spans):
        y = index * row_height + 4
        left = label_width + plot * max(0.0, span.start - start) / total
        stop = span.end if span.end is not None else end
        bar_width = max(2.0, plot * max(0.0, stop - span.start) / total)
        colour = "#d64541" if span.outcome == "failed" else FAMILY_COLOURS.get(span.family, "#555")
        dash = ' stroke="#333" stroke-dasharray="3,2"' if span.outcome == "open" else ""
        retries = (f", {span.retries} retr{'y' if span.retries == 1 else 'ies'}"
                   if span.retries else "")
        label = f"#{span.call} {span.family} {span.name}"
        title = (f"#{span.call} {span.family} {span.name}({span.args}): {span.outcome}, "
                 f"{format_duration(span.duration) if span.end is not None else 'open'}{retries}")
        parts.append(
            f'<g class="call {escape(span.family)} {span.outcome}" data-call="{span.call}">'
            f'<title>{escape(title)}</title>'
            f'{_label(label[:40], y + 12, fork_from, span)}'
            f'<rect x="{left:.1f}" y="{y}" width="{bar_width:.1f}" height="{row_height - 5}" '
            f'fill="{colour}" fill-opacity="0.85"{dash}/>')
        for retry in range(span.retries):  # a tick per failed attempt
            tick = left + bar_width * (retry + 1) / (span.retries + 1)
            parts.append(f'<line x1="{tick:.1f}" y1="{y}" x2="{tick:.1f}" '
                         f'y2="{y + row_height - 5}" stroke="#f2994a" stroke-width="2"/>')
        duration = format_duration(span.duration) if span.end is not None else "waiting"
        parts.append(f'<text x="{min(left + bar_width + 4, width - 60):.1f}" y="{y + 12}" '
                     f'{_FONT} fill="#444">{escape(duration)}{escape(retries)}</text></g>')
    parts.append(f'<text x="{label_width}" y="{height - 4}" {_FONT} fill="#666">'
                 f'0 s</text><text x="{width - 70}" y="{height - 4}" {_FONT} fill="#666">'
                 f'{escape(format_duration(total))}</text></svg>')
    return "".join(parts)


def _label(text: str, y: int, fork_from: str | None, span: CallSpan) -> str:
    label = f'<text x="0" y="{y}" {_FONT}>{escape(text)}</text>'
    if fork_from is None or span.family == "running":
        return label
    href = f"{fork_from}?fork_at={span.call - 1}#fork"
    return (f'<a href="{escape(href)}" class="fork-here"><title>fork here: keep calls '
            f'1..{span.call - 1}, run #{span.call} anew</title>{label}</a>')


def task_graph(view: DagView, width_per_layer: int = 190) -> str:
    """Tasks in layers by longest dependency chain, edges left to right."""
    layers: dict[str, int] = {}

    def layer(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in layers:
            return layers[name]
        node = view.tasks.get(name)
        deps = [d for d in (node.dependencies if node else []) if d in view.tasks and
                d not in seen]
        layers[name] = value = 1 + max((layer(d, seen | {name}) for d in deps), default=-1)
        return value

    for name in view.tasks:
        layer(name)
    columns: dict[int, list[str]] = {}
    for name in view.tasks:
        columns.setdefault(layers[name], []).append(name)
    box_w, box_h, gap = 160, 34, 14
    places = {name: (16 + column * width_per_layer, 16 + row * (box_h + gap))
              for column, names in columns.items() for row, name in enumerate(names)}
    width = 32 + width_per_layer * max(1, len(columns))
    height = 32 + (box_h + gap) * max([1] + [len(n) for n in columns.values()])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="task graph of {escape(view.dag_name)}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/>'
             '</marker></defs>']
    for name, node in view.tasks.items():
        x2, y2 = places[name]
        for dep in node.dependencies:
            if dep in places:
                x1, y1 = places[dep]
                parts.append(f'<line class="edge" x1="{x1 + box_w}" y1="{y1 + box_h / 2}" '
                             f'x2="{x2}" y2="{y2 + box_h / 2}" stroke="#777" '
                             'marker-end="url(#arrow)"/>')
    for name, node in view.tasks.items():
        x, y = places[name]
        title = f"{name}: {node.state}, {node.attempts} attempt(s)" + (
            f" - {node.detail}" if node.detail else "")
        parts.append(
            f'<g class="task {node.state.lower()}" data-task="{escape(name)}">'
            f'<title>{escape(title)}</title>'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{STATE_COLOURS.get(node.state, "#ccc")}" stroke="#555"/>'
            f'<text x="{x + 8}" y="{y + 14}" {_FONT}>{escape(name[:22])}</text>'
            f'<text x="{x + 8}" y="{y + 27}" {_FONT} fill="#222">{node.state.lower()}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def tree(nodes: list[TreeNode], current: str) -> str:
    """A workflow and its descendants, one row each, indented by depth, linked."""
    row_height, indent = 22, 22
    width = 40 + max([0] + [n.depth * indent + 14 + 7 * len(n.workflow_id + n.name)
                            for n in nodes]) + 140
    height = row_height * len(nodes) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="tree" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="tree of child workflows">']
    rows = {n.workflow_id: i for i, n in enumerate(nodes)}
    for i, node in enumerate(nodes):
        y = i * row_height + 14
        x = 10 + node.depth * indent
        parent_row = rows.get(node.parent_id or "")
        if node.depth and parent_row is not None:
            px = 10 + (node.depth - 1) * indent + 5
            parts.append(f'<path d="M{px},{parent_row * row_height + 19} V{y} H{x}" '
                         'fill="none" stroke="#999"/>')
        weight = ' font-weight="bold"' if node.workflow_id == current else ""
        parts.append(
            f'<a href="{escape(workflow_link(node.workflow_id, "/graph"))}">'
            f'<circle cx="{x + 5}" cy="{y}" r="5" fill="{STATE_COLOURS.get(node.status, "#ccc")}"/>'
            f'<text x="{x + 14}" y="{y + 4}" {_FONT}{weight}>{escape(node.workflow_id)} '
            f'{escape(node.name)} ({node.status.lower()})</text></a>')
    parts.append("</svg>")
    return "".join(parts)
