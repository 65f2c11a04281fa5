"""The daily report (CONTRACT §13): `/reports?date=…` (staff page with two charts drawn
here as SVG: no script, no chart library, nothing from a CDN), `GET /api/reports/daily`
(staff JSON) and `GET /api/orders.csv` (one row per drink).

A day is the shop's local day: the menu's time zone when it has one, else UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape
from quart import Response, request
from quart_trio import QuartTrio

from boba_runtime.store.order_store import StoreUnavailable
from boba_runtime.store.records import (
    MAX_CSV_DAYS,
    OUTCOMES,
    DailyReport,
    daily_report,
    orders_csv,
    shop_zone,
)
from boba_web.api import json_response
from boba_web.calls_routes import OUTCOME_LABELS, no_store, unavailable
from boba_web.errors import json_error
from boba_web.rendering import render_page
from boba_web.staff import request_is_staff, staff_only

# --- SVG charts --------------------------------------------------------------------------------

BAR_COLOUR = "#127a3e"
AXIS_COLOUR = "#555"
GRID_COLOUR = "#ddd"
FONT = 'font-family="system-ui, sans-serif"'


def _nice_top(largest: int) -> int:
    """An axis maximum at or above `largest` that divides into 4 whole steps."""
    top = max(4, largest)
    return top + (-top) % 4


def column_chart(
    points: Sequence[tuple[str, int]], *, title: str, width: int = 640, height: int = 260
) -> Markup:
    """Vertical bars (orders per hour): one column per label, value printed above it."""
    left, right, top, bottom = 36, 8, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_top(max((v for _, v in points), default=0))
    slot = plot_w / max(1, len(points))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart-svg">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):
        value = peak * step // 4
        y = top + plot_h - plot_h * step / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOUR}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" {FONT} '
            f'fill="{AXIS_COLOUR}">{value}</text>'
        )
    for index, (label, value) in enumerate(points):
        bar_h = plot_h * value / peak
        x = left + index * slot + slot * 0.15
        y = top + plot_h - bar_h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar_h:.1f}" '
            f'fill="{BAR_COLOUR}" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        if value:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'font-size="10" {FONT} fill="#111">{value}</text>'
            )
        if index % 3 == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle" font-size="11" {FONT} fill="{AXIS_COLOUR}">'
                f"{escape(label)}</text>"
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{AXIS_COLOUR}"/></svg>'
    )
    return Markup("".join(parts))


def bar_chart(
    points: Sequence[tuple[str, int]], *, title: str, width: int = 640, min_height: int = 260
) -> Markup:
    """Horizontal bars (drinks by flavor): a label, a bar and its count per row; a short
    menu's rows grow (up to 60 units) to fill the chart's height."""
    label_w, right, top = 170, 48, 8
    rows = max(1, len(points))
    row = min(60.0, max(28.0, (min_height - 2 * top) / rows))
    height = round(top * 2 + row * rows)
    plot_w = width - label_w - right
    peak = max((v for _, v in points), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart-svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" font-size="13" '
            f'{FONT} fill="{AXIS_COLOUR}">No drinks this day</text>'
        )
    for index, (label, value) in enumerate(points):
        y = top + index * row
        bar_w = plot_w * value / peak
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end" '
            f'font-size="13" {FONT} fill="#111">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 5}" width="{bar_w:.1f}" height="{row - 10}" '
            f'fill="{BAR_COLOUR}" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text x="{label_w + bar_w + 6:.1f}" y="{y + row / 2 + 4:.1f}" font-size="13" '
            f'{FONT} fill="#111">{value}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


# --- routes -------------------------------------------------------------------------------------


def parse_day(text: str | None) -> date | None:
    """`YYYY-MM-DD` exactly (years 1970 to 9998: a day's bounds must exist in UTC)."""
    if text is None or len(text) != 10:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if 1970 <= day.year <= 9998 else None


def money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.2f}"


def report_context(report: DailyReport, today: date) -> dict[str, Any]:
    day = date.fromisoformat(report.date)
    outcome_rows = [
        (OUTCOME_LABELS.get(name, name), report.calls_by_outcome.get(name, 0))
        for name in (*OUTCOMES, "in_progress")
        if report.calls_by_outcome.get(name, 0)
    ]
    share = report.ordered_share
    median = report.median_seconds_to_order
    return {
        "report": report,
        "figures": [
            ("Orders", str(report.orders)),
            ("Revenue", money(report.revenue)),
            ("Average ticket", money(report.average_ticket)),
            ("Drinks", str(report.drinks)),
            ("Calls", str(report.calls)),
            ("Calls that ordered", "–" if share is None else f"{share:.0%}"),
            ("Median greeting → order", "–" if median is None else f"{median:.0f} s"),
            ("Cancelled", str(report.cancelled)),
        ],
        "outcome_rows": outcome_rows,
        "hour_chart": column_chart(
            [(h.hour, h.orders) for h in report.orders_per_hour],
            title=f"Orders per hour on {report.date}",
        ),
        "flavor_chart": bar_chart(
            list(report.drinks_by_flavor.items()), title=f"Drinks by flavor on {report.date}"
        ),
        "previous": (day - timedelta(days=1)).isoformat(),
        "next": (day + timedelta(days=1)).isoformat() if day < today else None,
        "today": today.isoformat(),
    }


def register_report_routes(app: QuartTrio, services: Any) -> None:
    store = services.store

    def today() -> date:
        now: datetime = services.clock()
        return now.astimezone(shop_zone(services.menu)).date()

    def wanted_day() -> date | None:
        text = request.args.get("date")
        return today() if text is None else parse_day(text)

    @app.get("/api/reports/daily")
    @staff_only(services)
    async def api_daily() -> Response:
        day = wanted_day()
        if day is None:
            return no_store(json_error(400, "date must be a day as YYYY-MM-DD."))
        try:
            report = await daily_report(store, day, shop_zone(services.menu))
        except StoreUnavailable as error:
            return unavailable(error)
        return no_store(json_response(report))

    @app.get("/api/orders.csv")
    @staff_only(services)
    async def api_orders_csv() -> Response:
        first = parse_day(request.args.get("from", today().isoformat()))
        last = parse_day(request.args.get("to", request.args.get("from", today().isoformat())))
        if first is None or last is None:
            return no_store(json_error(400, "from and to must be days as YYYY-MM-DD."))
        if last < first:
            return no_store(json_error(400, "to must not be before from."))
        if (last - first).days >= MAX_CSV_DAYS:
            return no_store(json_error(400, f"Ask for at most {MAX_CSV_DAYS} days at once."))
        try:
            text = await orders_csv(store, first, last, shop_zone(services.menu))
        except StoreUnavailable as error:
            return unavailable(error)
        response = Response(text, status=200, content_type="text/csv; charset=utf-8")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="orders-{first.isoformat()}-to-{last.isoformat()}.csv"'
        )
        return no_store(response)

    @app.get("/reports")
    async def report_page() -> Response:
        if not await request_is_staff(services):
            return await render_page("login.html")
        day = wanted_day()
        if day is None:
            return await render_page(
                "report.html", 400, report=None, missing="The date must look like 2026-11-25.",
                today=today().isoformat(),
            )
        try:
            report = await daily_report(store, day, shop_zone(services.menu))
        except StoreUnavailable:
            return await render_page(
                "report.html", 503, report=None, today=today().isoformat(),
                missing="The order store is not answering; try again shortly.",
            )
        return await render_page("report.html", missing=None, **report_context(report, today()))
