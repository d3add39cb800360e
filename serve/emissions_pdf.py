"""A compliance report as PDF (fpdf2): the period, wells, totals per gas, intensity, threshold status, the factor
versions the records used, and a bar chart of CO2e per month drawn with fpdf2's own rectangles and lines.

The core PDF fonts are Latin-1: text is reduced to it (``CO2e``, not a subscript two).
"""

import uuid
from datetime import date, datetime
from typing import Any

from fpdf import FPDF

__all__ = ["render_report"]

_CHART_W, _CHART_H = 170.0, 60.0


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _t(kg: float | None) -> str:
    return "-" if kg is None else f"{kg / 1000.0:,.3f}"


def render_report(*, report_id: uuid.UUID, tenant_id: str, title: str, start: date, end: date, wells: list[str],
                  totals: dict[str, Any], factor_versions: list[dict[str, Any]], generated_at: datetime,
                  supersedes: uuid.UUID | None) -> bytes:
    """The report's PDF bytes.

    >>> pdf = render_report(report_id=uuid.UUID(int=1), tenant_id="t", title="Q1", start=date(2026, 1, 1),
    ...                     end=date(2026, 3, 31), wells=["W-1"], totals={"by_gas": [], "by_month": [],
    ...                     "co2e_kg": 0.0, "boe": 0.0, "kg_co2e_per_boe": None, "gap_days": 90, "thresholds": [],
    ...                     "gwp": "AR5"}, factor_versions=[], generated_at=datetime(2026, 4, 1), supersedes=None)
    >>> pdf[:5]
    b'%PDF-'
    """
    pdf = FPDF(format="A4")
    pdf.set_creation_date(generated_at)
    pdf.set_title(_latin1(title))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    lines = [f"Emissions compliance report {report_id}", f"Tenant: {tenant_id}",
             f"Period: {start.isoformat()} to {end.isoformat()} (inclusive)",
             f"Wells ({len(wells)}): {', '.join(wells[:40])}{' ...' if len(wells) > 40 else ''}",
             f"Generated: {generated_at.isoformat(timespec='seconds')}",
             f"CO2e: {totals['gwp']}",
             f"Well-days without a production record (gaps, not counted as zero): {totals['gap_days']}"]
    if supersedes is not None:
        lines.append(f"Supersedes report {supersedes}")
    for line in lines:
        pdf.multi_cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    _heading(pdf, "Totals")
    _table(pdf, ["Gas", "Tonnes", "Tonnes CO2e"],
           [[g["gas"], _t(g["kg"]), _t(g["co2e_kg"])] for g in totals["by_gas"]]
           + [["All", "", _t(totals["co2e_kg"])]], [40, 50, 50])
    intensity = totals["kg_co2e_per_boe"]
    pdf.cell(0, 6, _latin1(f"Production: {totals['boe']:,.1f} BOE (oil bbl + gas Mcf / 6); intensity: "
                           + ("-" if intensity is None else f"{intensity:,.3f} kg CO2e per BOE")),
             new_x="LMARGIN", new_y="NEXT")
    _heading(pdf, "CO2e per month (tonnes)")
    _chart(pdf, [(m["month"][:7], m["co2e_kg"] / 1000.0) for m in totals["by_month"]])
    _heading(pdf, "Threshold status at the period's end")
    if totals["thresholds"]:
        _table(pdf, ["Threshold", "Scope", "Gas", "Period", "Limit t", "Actual t", "Actual %", "Projected %"],
               [[t["name"][:30], t["well_id"] or "tenant", t["gas"], t["period"], f"{t['limit_tonnes']:,.3f}",
                 f"{t['actual_tonnes']:,.3f}", f"{t['actual_pct']:.1f}", f"{t['projected_pct']:.1f}"]
                for t in totals["thresholds"]], [40, 22, 14, 30, 22, 22, 18, 22])
    else:
        pdf.cell(0, 6, "No thresholds defined.", new_x="LMARGIN", new_y="NEXT")
    _heading(pdf, "Emission factor versions used")
    _table(pdf, ["Factor", "Version", "Value"],
           [[f["key"], f["version"], f"{f['value']:g}"] for f in factor_versions], [80, 50, 40])
    pdf.ln(4)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 4, "Stored immutably with its SHA-256; superseded, never edited or deleted. Retained at least"
                   " 7 years.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)


def _table(pdf: FPDF, header: list[str], rows: list[list[str]], widths: list[float]) -> None:
    pdf.set_font("Helvetica", "B", 8)
    for text, width in zip(header, widths, strict=True):
        pdf.cell(width, 6, _latin1(text), border=1)
    pdf.ln()
    pdf.set_font("Helvetica", "", 8)
    for row in rows:
        for text, width in zip(row, widths, strict=True):
            pdf.cell(width, 5, _latin1(str(text)), border=1)
        pdf.ln()


def _chart(pdf: FPDF, bars: list[tuple[str, float]]) -> None:
    """Bars scaled to the largest, each labelled with its month, on an axis."""
    if not bars:
        pdf.cell(0, 6, "No emissions recorded in the period.", new_x="LMARGIN", new_y="NEXT")
        return
    if pdf.get_y() + _CHART_H + 12 > pdf.h - pdf.b_margin:
        pdf.add_page()
    x0, y0 = pdf.l_margin + 10, pdf.get_y() + 2
    top = max(v for _, v in bars) or 1.0
    slot = _CHART_W / len(bars)
    pdf.set_draw_color(0, 0, 0)
    pdf.line(x0, y0 + _CHART_H, x0 + _CHART_W, y0 + _CHART_H)
    pdf.line(x0, y0, x0, y0 + _CHART_H)
    pdf.set_font("Helvetica", "", 6)
    pdf.set_xy(x0 - 10, y0 - 1)
    pdf.cell(10, 3, f"{top:,.1f}")
    pdf.set_fill_color(70, 120, 170)
    for i, (label, value) in enumerate(bars):
        height = _CHART_H * value / top
        x = x0 + i * slot + slot * 0.15
        pdf.rect(x, y0 + _CHART_H - height, slot * 0.7, height, style="F")
        pdf.set_xy(x0 + i * slot, y0 + _CHART_H + 1)
        pdf.cell(slot, 3, label if len(bars) <= 24 or i % 3 == 0 else "", align="C")
    pdf.set_xy(pdf.l_margin, y0 + _CHART_H + 6)
    pdf.set_font("Helvetica", "", 9)
