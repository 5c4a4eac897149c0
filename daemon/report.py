"""`voicewatch report`: a day's monitoring from the event log, as a static HTML page or CSV.

Per channel and speaker: the segments (placed on the UTC clock as on the timeline page), their total
airtime, their clips and the verdicts of any reviews. The HTML file stands alone (no scripts, no
links but the clips').
"""

from __future__ import annotations

import argparse
import csv
import datetime
import html
import io
import re
import sqlite3
import sys
import time
from pathlib import Path

from voicewatch.reviewlog import ReviewLog
from voicewatch.timeline import Span, read_timeline

RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """`24h`, `90m`, `7d` (that long ago), `2026-12-01` or `2026-12-01T06:00` (local time unless it says
    otherwise), or UTC epoch seconds."""
    now = time.time() if now is None else now
    relative = RELATIVE.match(text.strip())
    if relative:
        return now - float(relative[1]) * UNITS[relative[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use e.g. 24h, 90m, 7d, 2026-12-01 or 2026-12-01T06:00") from None


def local(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def airtime(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def finished_segments(log_path: str, since: float, until: float) -> list[Span]:
    return [s for s in read_timeline(log_path, since, until) if s.kind == "segment" and not s.open]


def verdicts(log_path: str, clips: list[str]) -> dict[str, str]:
    """clip → `confirmed` / `rejected` (reviews in effect)."""
    if not clips:
        return {}
    try:
        log = ReviewLog(log_path, read_only=True)
        try:
            reviews = log.recent(limit=len(clips) * 4, clips=clips)
        finally:
            log.close()
    except sqlite3.Error:  # no review was ever made: no table
        return {}
    return {r.clip: f"{r.verdict}ed" for r in reversed(reviews) if r.undone_at is None}


def to_csv(segments: list[Span], reviews: dict[str, str], clip_link: str | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["channel", "speaker", "start_utc", "end_utc", "seconds", "peak", "mean", "clip", "review", "programme"])
    for s in segments:
        utc = lambda t: datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")  # noqa: E731
        writer.writerow([s.stream, s.speaker, utc(s.t0), utc(s.t1), round(s.t1 - s.t0, 1), s.peak, s.mean,
                         _link(s.clip, clip_link) or "", reviews.get(s.clip or "", ""), s.programme or ""])
    return out.getvalue()


def _link(clip: str | None, clip_link: str | None) -> str | None:
    if clip is None:
        return None
    return clip_link.format(id=clip) if clip_link else clip


def to_html(segments: list[Span], reviews: dict[str, str], clip_link: str | None, since: float, until: float) -> str:
    e = html.escape
    groups: dict[tuple[str, str], list[Span]] = {}
    for s in segments:
        groups.setdefault((s.stream, s.speaker or ""), []).append(s)
    summary = "".join(
        f"<tr><td>{e(stream)}</td><td>{e(speaker)}</td><td>{len(spans)}</td><td>{airtime(sum(s.t1 - s.t0 for s in spans))}</td>"
        f"<td>{sum(s.clip is not None for s in spans)}</td></tr>" for (stream, speaker), spans in sorted(groups.items()))
    sections = []
    for stream in sorted({s.stream for s in segments}):
        rows = []
        for s in (s for s in segments if s.stream == stream):
            link = _link(s.clip, clip_link)
            clip = f'<a href="{e(link)}">{e(s.clip or "")}</a>' if link else "–"
            rows.append(f"<tr><td>{local(s.t0)}</td><td>{local(s.t1)[11:]}</td><td>{e(s.speaker or '')}</td>"
                        f"<td>{airtime(s.t1 - s.t0)}</td><td>{s.peak:.2f}</td><td>{s.mean:.2f}</td><td>{clip}</td>"
                        f"<td>{e(reviews.get(s.clip or '', ''))}</td><td>{e(s.programme or '')}</td></tr>")
        sections.append(f"<h2>{e(stream)}</h2><table><tr><th>from</th><th>to</th><th>speaker</th><th>airtime</th>"
                        f"<th>peak</th><th>mean</th><th>clip</th><th>review</th><th>programme</th></tr>{''.join(rows)}</table>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>voicewatch report {local(since)} – {local(until)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#1d232b}}table{{border-collapse:collapse;margin-bottom:20px}}
th,td{{padding:4px 10px;border-bottom:1px solid #d9dde3;text-align:left}}th{{color:#6b7480}}</style></head>
<body><h1>voicewatch report</h1><p>{local(since)} – {local(until)} (local time) · {len(segments)} segments</p>
<table><tr><th>channel</th><th>speaker</th><th>segments</th><th>airtime</th><th>clips</th></tr>{summary}</table>
{''.join(sections) or '<p>No segments in this period.</p>'}
</body></html>
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", required=True, metavar="WHEN", help="24h, 90m, 7d, 2026-12-01, 2026-12-01T06:00 or epoch")
    parser.add_argument("--until", metavar="WHEN", help="end of the period (default: now)")
    form = parser.add_mutually_exclusive_group(required=True)
    form.add_argument("--html", action="store_true", help="a standalone HTML page")
    form.add_argument("--csv", action="store_true", help="one CSV row per segment")
    parser.add_argument("-c", "--config", help="the core's config (its events.log_path and clips.path)")
    parser.add_argument("--log", metavar="PATH", help="the core's event log (default: events.log_path of --config)")
    parser.add_argument("--clip-link", metavar="TEMPLATE",
                        help="link for each clip, {id} replaced by its id, e.g. http://127.0.0.1:8090/api/clips/{id} "
                             "(default: the clip's file in clips.path)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")


def run(args: argparse.Namespace) -> int:
    from voicewatch.config import load_config

    config = load_config(args.config)
    log = args.log or config.events.log_path
    if log is None:
        raise ValueError("no event log: give --log PATH or a --config with events.log_path")
    if not Path(log).exists():
        raise ValueError(f"event log {log} does not exist")
    since = parse_when(args.since)
    until = parse_when(args.until) if args.until else time.time()
    if since >= until:
        raise ValueError("--since must come before --until")
    clip_link = args.clip_link
    if clip_link is None and config.clips.path is not None:
        clip_link = Path(config.clips.path).resolve().as_uri() + "/{id}.flac"
    segments = finished_segments(log, since, until)
    reviews = verdicts(log, [s.clip for s in segments if s.clip])
    text = (to_html(segments, reviews, clip_link, since, until) if args.html else to_csv(segments, reviews, clip_link))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
