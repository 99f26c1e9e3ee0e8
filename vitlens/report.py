"""One report for any model: every analysis its family supports, on one page.

:func:`build_report` runs the paper's measurements that apply to a model's family
(:func:`vitlens.model_info`) through the public analysis functions, optionally against a
reference model, and returns a :class:`Report`; :meth:`Report.to_html` writes one
self-contained HTML page (figures embedded as base64 PNG, no external CSS, scripts or
fonts) with a caption per section, a table of key numbers and the timing of each section.

Sections, in order, are the entries of :data:`vitlens.registry.ANALYSES` marked for the
report (the command line runs the same entries): CKA within each model (Fig. 1) and against
the reference (Fig. 2), mean attention distance (Fig. 3), block 0's heads against the
reference (Fig. 5), effective receptive fields (Fig. 6), skip-connection norm ratios
(Fig. 7), localization (Fig. 9, 10) and few-shot linear probes (Fig. 11).

A section the family does not support, or that lacks what it needs (a reference, labels),
is kept with its status and the reason in words. Every analysis is data-parallel under
``torch.distributed`` (except the receptive fields, which every rank computes whole), so
under ``torchrun`` every rank builds the same report and one of them writes it.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import nn
from tqdm.auto import tqdm

from vitlens.models import model_name
from vitlens.models.families import model_info
from vitlens.plotting import use_theme
from vitlens.registry import ANALYSES, Analysis, Inputs, MissingInput
from vitlens.streaming import RunOptions, process_shard, resolve_device

__all__ = ["Report", "Section", "build_report", "section_keys"]


@dataclass
class Section:
    """One analysis in a report.

    Attributes:
        key: the section's key (:func:`vitlens.report.section_keys`): the analysis's key, with
            ``_against`` for its run against the reference.
        title: heading.
        caption: what the analysis measures and which figure of the paper it serves.
        status: ``"ok"``, ``"not applicable"`` (the family lacks what it measures) or
            ``"skipped"`` (the inputs lack what it needs, e.g. labels or a reference).
        reason: why a section did not run (``None`` when it ran).
        numbers: key numbers, ``{label: float, list of floats or str}``.
        arrays: the full results (e.g. the CKA matrix), for checks and saving.
        figures: PNG images (bytes, drawn at twice the display resolution).
        seconds: wall time of the section.
    """

    key: str
    title: str
    caption: str
    status: str = "ok"
    reason: str | None = None
    numbers: dict[str, object] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    figures: list[bytes] = field(default_factory=list)
    figure_widths: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    """The result of :func:`build_report`; :meth:`to_html` writes it as one page.

    Attributes:
        model, against: names of the model and of the reference (``None`` without one).
        family, against_family: their families (:func:`vitlens.model_info`).
        data: description of the images.
        num_images: images analysed (the probes' training pool may add more).
        device: where the analyses ran.
        world_size: processes that shared the work (``torchrun``).
        version: the vitlens version.
        sections: every section of :func:`vitlens.report.section_keys`, in order.
        created: ISO timestamp.
        seconds: total wall time.
    """

    model: str
    against: str | None
    family: str
    against_family: str | None
    data: str
    num_images: int
    device: str
    world_size: int
    version: str
    sections: list[Section]
    created: str
    seconds: float

    def section(self, key: str) -> Section:
        """The section with this key (see :func:`vitlens.report.section_keys`)."""
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"no section {key!r}; sections: {[s.key for s in self.sections]}")

    def to_html(self) -> str:
        """The report as one self-contained HTML page (no external URLs)."""
        return _render(self)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` (UTF-8); returns the path."""
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path


# --------------------------------------------------------------------------- helpers


def _png(axes) -> tuple[bytes, int]:
    """PNG bytes of the figure holding ``axes`` at twice its display resolution, closed."""
    figure = np.asarray(axes, dtype=object).ravel()[0].figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=2 * figure.dpi)
    width = round(float(figure.get_size_inches()[0]) * figure.dpi)
    plt.close(figure)
    return buffer.getvalue(), width


def _add_figure(section: Section, axes) -> None:
    png, width = _png(axes)
    section.figures.append(png)
    section.figure_widths.append(width)


def _sections(has_reference: bool) -> list[tuple[str, Analysis, bool]]:
    """``(section key, analysis, against the reference)`` in report order."""
    sections = []
    for entry in ANALYSES:
        if not entry.in_report:
            continue
        if entry.reference == "optional":
            sections.append((entry.key, entry, False))
            sections.append((f"{entry.key}_against", entry, True))
        else:
            sections.append((entry.key, entry, entry.reference == "required"))
    return sections


def section_keys() -> list[str]:
    """The keys of a report's sections, in order."""
    return [key for key, _, _ in _sections(True)]


def _blocked(entry: Analysis, family: str, against: bool, has_reference: bool) -> tuple | None:
    """``(status, reason)`` for a section that cannot run; ``None`` when it can."""
    if family in entry.not_for:
        return "not applicable", entry.not_for[family]
    if against and not has_reference:
        return "skipped", "no reference model (pass --against MODEL)"
    return None


def _run_section(section: Section, entry: Analysis, runs: list[Inputs], by_model: bool) -> None:
    """Run ``entry`` once per inputs into ``section``; with ``by_model`` (each model alone:
    the model, and the reference if any) numbers and arrays are named by model."""
    for inputs in runs:
        try:
            outcome = entry.run(inputs)
        except MissingInput as err:
            section.status, section.reason = "skipped", str(err)
            return
        suffix = f", {inputs.name}" if by_model else ""
        for label, value in outcome.numbers.items():
            section.numbers[label + suffix] = value
        for name, value in outcome.arrays.items():
            section.arrays[f"{name}_{inputs.name}" if suffix else name] = value
        _add_figure(section, outcome.axes)


def build_report(
    model: nn.Module,
    data,
    against: nn.Module | None = None,
    *,
    probe_data=None,
    name: str | None = None,
    against_name: str | None = None,
    data_name: str | None = None,
    settings: dict[str, object] | None = None,
    run: RunOptions = RunOptions(),
) -> Report:
    """Run every analysis ``model``'s family supports and collect figures and key numbers.

    Args:
        model: a timm ViT, ResNet or MLP-Mixer (zoo or timm;
            :func:`vitlens.models.zoo.load_model`).
        data: ``(N, C, H, W)`` tensor or Dataset of images preprocessed for ``model``; a
            Dataset with labels (``.targets`` or a
            :class:`vitlens.data.shapes.ShapesDataset`) enables the probes.
        against: a reference model fed the same images (e.g. a ResNet for a ViT), for the
            CKA against it and the head subsets; ``None`` skips those sections.
        probe_data: labelled images for the probes' training pool (e.g. the training split);
            ``None`` splits ``data`` into two halves balanced over classes.
        name, against_name: labels (default: :func:`vitlens.models.zoo.model_name`).
        data_name: how the report describes the images (default: the Dataset's class).
        settings: the analyses' settings marked for the report, by name (``measure`` of
            the CKA heatmaps; ``shots`` and ``seeds`` of the probes); defaults elsewhere.
        run: batch size, device, progress (:class:`~vitlens.streaming.RunOptions`); the
            receptive fields use at most 16 images per batch.

    Returns:
        :class:`Report` with every section of :func:`vitlens.report.section_keys`, run
        or marked "not applicable" / "skipped" with the reason.

    Raises:
        ValueError: a model of no supported family, an unknown setting, or bad input to an
            analysis.

    Under an initialised ``torch.distributed`` group every rank must call it; all ranks
    return the same numbers.
    """
    start = time.perf_counter()
    settings = dict(settings or {})
    reportable = {s.name for e in ANALYSES if e.in_report for s in e.settings if s.in_report}
    unknown = sorted(set(settings) - reportable)
    if unknown:
        raise ValueError(
            f"the report has no setting {', '.join(map(repr, unknown))}; "
            f"settings: {', '.join(sorted(reportable))}"
        )
    info = model_info(model)
    against_info = model_info(against) if against is not None else None
    name = name or model_name(model)
    against_name = (against_name or model_name(against)) if against is not None else None
    if against is not None and against_name == name:
        against_name = f"{against_name} (reference)"
    plan = _sections(against is not None)
    sections = []
    bar = tqdm(plan, total=len(plan), disable=not run.progress, desc="report")
    with plt.rc_context():  # the book's theme for the report's figures, the caller's after
        use_theme()
        for key, entry, with_reference in bar:
            bar.set_postfix_str(key)
            title, caption = (
                entry.against
                if with_reference and entry.against
                else (
                    entry.title,
                    entry.caption,
                )
            )
            section = Section(key, title, caption)
            sections.append(section)
            blocked = _blocked(entry, info.family, with_reference, against is not None)
            if blocked is not None:
                section.status, section.reason = blocked
                continue
            own = {s.name: settings[s.name] for s in entry.settings if s.name in settings}
            options = run
            if entry.max_batch_size is not None and run.batch_size > entry.max_batch_size:
                options = run.with_batch_size(entry.max_batch_size)
            common = dict(images=data, run=options, settings=entry.settings_with(own))
            if with_reference:
                runs = [
                    Inputs(model, name, reference=against, reference_name=against_name, **common)
                ]
            else:
                runs = [Inputs(model, name, train_images=probe_data, **common)]
                if entry.reference == "optional" and against is not None:
                    runs.append(Inputs(against, against_name, **common))
            tick = time.perf_counter()
            _run_section(
                section, entry, runs, by_model=entry.reference == "optional" and not with_reference
            )
            section.seconds = time.perf_counter() - tick
    bar.close()
    return Report(
        model=name,
        against=against_name,
        family=info.family,
        against_family=against_info.family if against_info else None,
        data=data_name or type(data).__name__,
        num_images=len(getattr(data, "dataset", data)),  # a DataLoader's len counts batches
        device=str(resolve_device(run.device)),
        world_size=process_shard()[1],
        version=version("vitlens"),
        sections=sections,
        created=datetime.datetime.now().isoformat(timespec="seconds"),
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --accent: #0a7d91;
        --soft: #f6f8fa; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.55;
       font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial,
       sans-serif; font-size: 16px; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; margin: 2.4rem 0 .4rem; padding-bottom: .25rem;
     border-bottom: 1px solid var(--line); }
h2 .time { float: right; font-size: .8rem; font-weight: normal; color: var(--muted); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.subtitle { color: var(--muted); margin: 0 0 1.2rem; }
.caption { color: var(--muted); margin: .3rem 0 .8rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; font-family: ui-monospace, SFMono-Regular,
         Menlo, Consolas, monospace; font-size: .86rem; }
table.meta { width: auto; }
table.meta th { background: none; font-weight: 600; padding-right: 1.5rem; }
figure { margin: .8rem 0 1rem; text-align: center; }
figure img { max-width: 100%; height: auto; }
.status { display: inline-block; padding: .05rem .5rem; border-radius: 1rem;
          font-size: .78rem; font-weight: 600; }
.status.ok { background: #dafbe1; color: #1a7f37; }
.status.not-applicable, .status.skipped { background: #fff8c5; color: var(--warn); }
.note { background: var(--soft); border-left: 4px solid var(--warn); padding: .6rem .9rem;
        margin: .6rem 0 1rem; }
nav ol { columns: 2; margin: .4rem 0 0; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""


def _format(value) -> str:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(_format(v) for v in value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) >= 100 or abs(value) < 0.01 else f"{value:.3f}"


def _status_badge(status: str) -> str:
    return f'<span class="status {status.replace(" ", "-")}">{_escape(status)}</span>'


def _headline(section: Section) -> str:
    """The section's first scalar number, for the summary table."""
    for label, value in section.numbers.items():
        if isinstance(value, (float, int)) and not isinstance(value, bool):
            return f"{_escape(label)}: {_format(value)}"
    for label, value in section.numbers.items():
        if isinstance(value, list) and len(value) > 1:
            return f"{_escape(label)}: {_format(value[0])} (first) to {_format(value[-1])} (last)"
    return ""


def _render(report: Report) -> str:
    title = f"vitlens report: {report.model}" + (
        f" against {report.against}" if report.against else ""
    )
    models = f"{report.model} ({report.family})"
    if report.against:
        models += f"; reference {report.against} ({report.against_family})"
    meta = [
        ("Models", models),
        ("Images", f"{report.num_images} ({report.data})"),
        (
            "Device",
            report.device + (f", {report.world_size} processes" if report.world_size > 1 else ""),
        ),
        ("vitlens", report.version),
        ("Created", report.created),
        ("Total time", f"{report.seconds:.1f} s"),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_escape(title)}</h1>",
        '<p class="subtitle">Measurements of Raghu et al., <em>Do Vision Transformers See '
        "Like Convolutional Neural Networks?</em> (NeurIPS 2021), by vitlens.</p>",
        '<table class="meta">',
        *(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in meta),
        "</table>",
        "<h2>Summary</h2>",
        "<table><tr><th>Section</th><th>Status</th><th>Key number or reason</th><th>Time</th></tr>",
    ]
    for s in report.sections:
        detail = _headline(s) if s.status == "ok" else _escape(s.reason)
        time_cell = f"{s.seconds:.1f} s" if s.status == "ok" else ""
        out.append(
            f'<tr><td><a href="#{s.key}">{_escape(s.title)}</a></td>'
            f"<td>{_status_badge(s.status)}</td><td>{detail}</td><td>{time_cell}</td></tr>"
        )
    out.append("</table>")
    for s in report.sections:
        time_span = f'<span class="time">{s.seconds:.1f} s</span>' if s.status == "ok" else ""
        out.append(f'<section id="{s.key}"><h2>{_escape(s.title)} {time_span}</h2>')
        out.append(f'<p class="caption">{_escape(s.caption)}</p>')
        if s.status != "ok":
            out.append(
                f'<p class="note">{_status_badge(s.status)} {_escape(s.status.capitalize())}: '
                f"{_escape(s.reason)}</p></section>"
            )
            continue
        for png, width in zip(s.figures, s.figure_widths, strict=True):
            out.append(
                f'<figure><img width="{width}" alt="{_escape(s.title)}" '
                f'src="data:image/png;base64,{_b64(png)}"></figure>'
            )
        out.append("<table><tr><th>Quantity</th><th>Value</th></tr>")
        for label, value in s.numbers.items():
            out.append(f'<tr><td>{_escape(label)}</td><td class="num">{_format(value)}</td></tr>')
        out.append("</table></section>")
    out.append(
        f"<footer>vitlens {_escape(report.version)}: one page, no external resources. "
        "Numbers are computed on the images above; see the book for the full study.</footer>"
    )
    out.append("</main></body></html>")
    return "\n".join(out)


def _escape(value) -> str:
    return html.escape(str(value))


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")
