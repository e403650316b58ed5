"""A picture of the annual wheel (årshjul) of one plan year, as SVG and as PNG.

Design: the twelve months as a circle, January at the top, clockwise. Each phase is a ring of its
own, from the innermost (preparation, two years before the plan year) to the outermost (follow-up,
during the plan year): time flows outwards. A phase is a coloured arc over its window on a grey
track; a window of a year or more is the whole ring. Milestones are numbered marks on their
phase's ring; the legend beside the wheel lists the phases with their windows and the milestones
with their dates and names. Month names are Swedish.

The picture is built once as a list of shapes, then written as hand-made SVG text or drawn with
Pillow (supersampled for smooth edges). Same data, same bytes: no clock, no randomness; the PNG
is drawn with a system TrueType font (DejaVu Sans where there is one, see FONT_CANDIDATES).
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

from config.schema import OrgConfig
from tasks.swedish import MONTHS as MONTHS_SV
from tasks.swedish import short_date
from tasks.wheel import resolve_wheel

__all__ = ["MONTHS_SV", "font_path", "wheel_png", "wheel_shapes", "wheel_svg", "write_wheel"]

WIDTH, HEIGHT = 1600, 1000
SUPERSAMPLE = 2
CX, CY = 520.0, 540.0
OUTER, INNER = 400.0, 118.0
LEGEND_X = 1000.0
LEGEND_SIZE = 22.0
FONT_FAMILY = "DejaVu Sans, Arial, Helvetica, sans-serif"

# Okabe–Ito colours (distinguishable with the common forms of colour blindness), then a few more.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#6A3D9A", "#999933", "#882255")
TEXT, MUTED, TRACK, GRID = "#1F2933", "#52606D", "#ECEFF1", "#CFD8DC"


# -- shapes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arc:
    """A thick arc around (cx, cy); angles in degrees clockwise from 12 o'clock; >= 360 is a ring."""

    cx: float
    cy: float
    r: float
    start: float
    end: float
    width: float
    color: str


@dataclass(frozen=True)
class Disc:
    cx: float
    cy: float
    r: float
    fill: str
    stroke: str | None = None
    stroke_width: float = 0.0


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    color: str
    width: float = 1.0


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    fill: str


@dataclass(frozen=True)
class Label:
    """Text with its baseline at y; anchor start, middle or end."""

    x: float
    y: float
    text: str
    size: float
    color: str = TEXT
    anchor: str = "start"


Shape = Arc | Disc | Line | Box | Label


def _angle(d: date) -> float:
    """Degrees clockwise from 12 o'clock at the start of day d; every month is 30 degrees."""
    days = _days_in_month(d)
    return (d.month - 1 + (d.day - 1) / days) * 30.0


def _days_in_month(d: date) -> int:
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return (nxt - date(d.year, d.month, 1)).days


def _point(r: float, degrees: float) -> tuple[float, float]:
    rad = math.radians(degrees)
    return CX + r * math.sin(rad), CY - r * math.cos(rad)


def _short(d: date) -> str:
    return short_date(d)


def _text_px(text: str, size: float) -> float:
    path = font_path()
    if path is None:
        return len(text) * size * 0.62
    from PIL import ImageFont

    return ImageFont.truetype(path, round(size * 4)).getlength(text) / 4


def _nb(text: str) -> str:
    """Keep a date on one line."""
    return text.replace(" ", "\u00a0")


def _wrap(text: str, size: float, width: float) -> list[str]:
    """The text in lines no wider than `width` pixels, broken between words: a legend line is
    read whole, never cut."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and _text_px(f"{lines[-1]} {word}", size) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def wheel_shapes(cfg: OrgConfig, plan_year: int) -> list[Shape]:
    """The picture as shapes in drawing order (pure: the same config and year give the same list)."""
    wheel = resolve_wheel(cfg, plan_year)
    phases = list(cfg.wheel.phases)
    n = max(len(phases), 1)
    ring = (OUTER - INNER) / n
    shapes: list[Shape] = []
    shapes.append(Label(40, 56, f"Årshjul {plan_year} – {cfg.organisation.name}", 30))
    shapes.append(Label(40, 86, "Faserna som ringar, inifrån och ut i tidsordning; milstolparna numrerade.", 20, MUTED))

    # Month sectors: a grid line at each month's start and the Swedish name outside the wheel.
    for m in range(12):
        x1, y1 = _point(INNER - 6, m * 30.0)
        x2, y2 = _point(OUTER + 8, m * 30.0)
        shapes.append(Line(x1, y1, x2, y2, GRID, 1.5))
        lx, ly = _point(OUTER + 34, m * 30.0 + 15.0)
        shapes.append(Label(lx, ly + 7, MONTHS_SV[m], 21, MUTED, "middle"))

    colours = {p.id: PALETTE[i % len(PALETTE)] for i, p in enumerate(phases)}
    radius = {p.id: INNER + (i + 0.5) * ring for i, p in enumerate(phases)}
    for p in phases:
        start, end = wheel.phase_window(p.id)
        r = radius[p.id]
        shapes.append(Arc(CX, CY, r, 0.0, 360.0, ring * 0.78, TRACK))
        if (end - start).days + 1 >= 365:
            shapes.append(Arc(CX, CY, r, 0.0, 360.0, ring * 0.78, colours[p.id]))
        else:
            a0 = _angle(start)
            a1 = _angle(end) + 30.0 / _days_in_month(end)
            if a1 <= a0:
                a1 += 360.0
            shapes.append(Arc(CX, CY, r, a0, a1, ring * 0.78, colours[p.id]))

    # Milestones, numbered in date order; marks close together on a ring step in and out.
    milestones = sorted(cfg.wheel.milestones, key=lambda m: (wheel[m.id], m.id))
    mark = min(11.0, ring * 0.32)
    placed: dict[str, list[tuple[float, float]]] = {}
    for number, m in enumerate(milestones, start=1):
        base = radius.get(m.phase, OUTER)
        angle = _angle(wheel[m.id]) + 15.0 / _days_in_month(wheel[m.id])
        r = base
        for step in (0.0, -1.0, 1.0, -2.0, 2.0):
            r = base + step * mark * 0.9
            x, y = _point(r, angle)
            if all(math.hypot(x - px, y - py) >= 2 * mark for px, py in placed.get(m.phase, [])):
                break
        x, y = _point(r, angle)
        placed.setdefault(m.phase, []).append((x, y))
        shapes.append(Disc(x, y, mark, colours.get(m.phase, TEXT), "#FFFFFF", 2.0))
        shapes.append(Label(x, y + mark * 0.42, str(number), mark * 1.15, "#FFFFFF", "middle"))

    shapes.append(Disc(CX, CY, INNER - 14, "#FFFFFF"))
    shapes.append(Label(CX, CY - 8, "Planår", 20, MUTED, "middle"))
    shapes.append(Label(CX, CY + 30, str(plan_year), 40, TEXT, "middle"))

    # Legend: the phases with their windows, then the milestones, in full: a long name wraps onto
    # a second line. At 16 cm wide in a document a 22 px text is about 6.5 pt (the old cut labels: 4 pt).
    y = 140.0
    shapes.append(Label(LEGEND_X, y, "Faser (inifrån och ut)", 26))
    y += 8
    size = LEGEND_SIZE
    line = size * 1.25
    text_x = LEGEND_X + 34
    width = WIDTH - text_x - 20
    for p in phases:
        start, end = wheel.phase_window(p.id)
        y += line + 6
        shapes.append(Box(LEGEND_X, y - size * 0.8, size * 0.9, size * 0.9, colours[p.id]))
        for i, part in enumerate(_wrap(f"{p.name}  {_nb(_short(start))} – {_nb(_short(end))}", size, width)):
            y += line if i else 0
            shapes.append(Label(text_x, y, part, size))
    y += 56
    shapes.append(Label(LEGEND_X, y, "Milstolpar", 26))
    y += 8
    dot = size * 0.62
    for number, m in enumerate(milestones, start=1):
        y += line + 4
        shapes.append(Disc(LEGEND_X + dot, y - size * 0.35, dot, colours.get(m.phase, TEXT)))
        shapes.append(Label(LEGEND_X + dot, y - size * 0.35 + dot * 0.42, str(number), dot * 1.1, "#FFFFFF", "middle"))
        day = f"{_short(wheel[m.id])}  "
        parts = _wrap(m.name, size, width - _text_px(day, size))
        for i, part in enumerate([day + parts[0], *parts[1:]]):
            y += line if i else 0
            shapes.append(Label(text_x, y, part, size))
    # The picture is as tall as its legend needs.
    height = max(HEIGHT, round(y + 40))
    return [Box(0, 0, WIDTH, height, "#FFFFFF"), *shapes]


def picture_size(shapes: list[Shape]) -> tuple[int, int]:
    """(width, height) of the picture: its first shape is the white page."""
    page = shapes[0]
    assert isinstance(page, Box)
    return round(page.w), round(page.h)


# -- SVG ------------------------------------------------------------------------------------------


def _f(value: float) -> str:
    """Numbers with two decimals at most, without trailing zeros: stable, compact text."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg_arc(a: Arc) -> str:
    common = f'fill="none" stroke="{a.color}" stroke-width="{_f(a.width)}"'
    if a.end - a.start >= 360.0:
        return f'<circle cx="{_f(a.cx)}" cy="{_f(a.cy)}" r="{_f(a.r)}" {common}/>'
    x1, y1 = _point(a.r, a.start)
    x2, y2 = _point(a.r, a.end)
    large = 1 if a.end - a.start > 180.0 else 0
    path = f"M {_f(x1)} {_f(y1)} A {_f(a.r)} {_f(a.r)} 0 {large} 1 {_f(x2)} {_f(y2)}"
    return f'<path d="{path}" {common}/>'


def _svg(shape: Shape) -> str:
    if isinstance(shape, Arc):
        return _svg_arc(shape)
    if isinstance(shape, Disc):
        stroke = f' stroke="{shape.stroke}" stroke-width="{_f(shape.stroke_width)}"' if shape.stroke else ""
        return f'<circle cx="{_f(shape.cx)}" cy="{_f(shape.cy)}" r="{_f(shape.r)}" fill="{shape.fill}"{stroke}/>'
    if isinstance(shape, Line):
        return (
            f'<line x1="{_f(shape.x1)}" y1="{_f(shape.y1)}" x2="{_f(shape.x2)}" y2="{_f(shape.y2)}" '
            f'stroke="{shape.color}" stroke-width="{_f(shape.width)}"/>'
        )
    if isinstance(shape, Box):
        return (
            f'<rect x="{_f(shape.x)}" y="{_f(shape.y)}" width="{_f(shape.w)}" height="{_f(shape.h)}" '
            f'fill="{shape.fill}"/>'
        )
    return (
        f'<text x="{_f(shape.x)}" y="{_f(shape.y)}" font-size="{_f(shape.size)}" fill="{shape.color}" '
        f'text-anchor="{shape.anchor}">{escape(shape.text)}</text>'
    )


def wheel_svg(cfg: OrgConfig, plan_year: int) -> str:
    """The wheel as an SVG document (UTF-8 text)."""
    title = escape(f"Årshjul {plan_year} – {cfg.organisation.name}")
    shapes = wheel_shapes(cfg, plan_year)
    body = "\n".join(_svg(s) for s in shapes)
    width, height = picture_size(shapes)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}" role="img" aria-label="{title}">\n'
        f"<title>{title}</title>\n{body}\n</svg>\n"
    )


# -- PNG ------------------------------------------------------------------------------------------

_ANCHOR = {"start": "ls", "middle": "ms", "end": "rs"}
# TrueType fonts with the Swedish letters, first found wins (DejaVu comes with LibreOffice, which
# the tests install). Pillow's bundled font lacks å, ä, ö: without a system font the PNG spells
# them a, a, o rather than drawing empty boxes.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
_PLAIN = str.maketrans({"å": "a", "ä": "a", "ö": "o", "Å": "A", "Ä": "A", "Ö": "O", "é": "e", "–": "-", "…": "..."})


def font_path() -> str | None:
    """The TrueType font the PNG is drawn with, or None for Pillow's own (ASCII only)."""
    return next((p for p in FONT_CANDIDATES if Path(p).is_file()), None)


_png_lock = threading.Lock()
_png_cache: dict[tuple[int, int], tuple[OrgConfig, bytes]] = {}
_PNG_CACHE_SIZE = 8


def _draw_png(shapes: list[Shape], scale: int) -> bytes:
    from PIL import Image, ImageDraw, ImageFont  # late: only pictures need Pillow

    page_w, page_h = picture_size(shapes)
    img = Image.new("RGB", (page_w * scale, page_h * scale), "#FFFFFF")
    draw = ImageDraw.Draw(img)
    fonts: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}
    path = font_path()

    def s(v: float) -> float:
        return v * scale

    for shape in shapes:
        if isinstance(shape, Arc):
            box = (s(shape.cx - shape.r), s(shape.cy - shape.r), s(shape.cx + shape.r), s(shape.cy + shape.r))
            # Pillow draws the stroke inside the box: widen the box by half the stroke.
            half = s(shape.width) / 2
            outer = (box[0] - half, box[1] - half, box[2] + half, box[3] + half)
            width = max(1, round(s(shape.width)))
            if shape.end - shape.start >= 360.0:
                draw.ellipse(outer, outline=shape.color, width=width)
            else:
                draw.arc(outer, shape.start - 90.0, shape.end - 90.0, fill=shape.color, width=width)
        elif isinstance(shape, Disc):
            box = (s(shape.cx - shape.r), s(shape.cy - shape.r), s(shape.cx + shape.r), s(shape.cy + shape.r))
            outline = shape.stroke if shape.stroke else None
            draw.ellipse(box, fill=shape.fill, outline=outline, width=max(0, round(s(shape.stroke_width))))
        elif isinstance(shape, Line):
            draw.line(
                (s(shape.x1), s(shape.y1), s(shape.x2), s(shape.y2)), fill=shape.color, width=round(s(shape.width))
            )
        elif isinstance(shape, Box):
            draw.rectangle((s(shape.x), s(shape.y), s(shape.x + shape.w), s(shape.y + shape.h)), fill=shape.fill)
        else:
            px = max(6, round(s(shape.size)))
            font = fonts.get(px)
            if font is None:
                font = fonts[px] = ImageFont.truetype(path, px) if path else ImageFont.load_default(size=px)
            text = shape.text if path else shape.text.translate(_PLAIN)
            draw.text((s(shape.x), s(shape.y)), text, fill=shape.color, font=font, anchor=_ANCHOR[shape.anchor])
    if scale > 1:
        img = img.resize((page_w, page_h), Image.Resampling.LANCZOS)
    # A palette of 128 colours keeps the antialiasing and makes the file a third of the size:
    # the picture travels in every PF document and in the watch's artifact.
    img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    # 144 dpi: Word shows 1600 px as about 28 cm, scaled to the page width by the caller.
    img.save(out, format="PNG", dpi=(144, 144), compress_level=6)
    return out.getvalue()


def wheel_png(cfg: OrgConfig, plan_year: int) -> bytes:
    """The wheel as PNG bytes (1600 px wide, at least 1000 px tall: as tall as its legend). Cached
    per configuration object and year: a plan year's documents all carry the same picture."""
    key = (id(cfg), plan_year)
    with _png_lock:
        hit = _png_cache.get(key)
        if hit is not None and hit[0] is cfg:
            return hit[1]
    data = _draw_png(wheel_shapes(cfg, plan_year), SUPERSAMPLE)
    with _png_lock:
        if len(_png_cache) >= _PNG_CACHE_SIZE:
            _png_cache.pop(next(iter(_png_cache)))
        # The entry keeps the config alive, so its id cannot be reused while cached.
        _png_cache[key] = (cfg, data)
    return data


def write_wheel(cfg: OrgConfig, plan_year: int, out_dir: Path) -> tuple[Path, Path]:
    """Write arshjul-<org>-<year>.svg and .png into out_dir (atomically); returns both paths."""
    from tasks.documents.files import atomic_save

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"arshjul-{cfg.organisation.id}-{plan_year}"
    svg_path, png_path = out_dir / f"{stem}.svg", out_dir / f"{stem}.png"
    svg = wheel_svg(cfg, plan_year).encode("utf-8")
    png = wheel_png(cfg, plan_year)
    atomic_save(svg_path, lambda fh: fh.write(svg))
    atomic_save(png_path, lambda fh: fh.write(png))
    return svg_path, png_path
