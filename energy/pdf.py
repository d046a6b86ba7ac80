"""PDF of an HTML page (reports, statements) printed by headless Debian Chromium.

The PDF is the same document people see in the browser, charts included: Chromium runs the
page's JavaScript (Plotly) before printing. Chromium is Debian's ``chromium`` package
(``NOABER_CHROMIUM_PATH``, default ``/usr/bin/chromium``), driven by Playwright; no browser is
ever downloaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from energy.errors import NoaberError

#: The printable width of an A4 page with 12 mm side margins [CSS px at 96 dpi]: the page is
#: laid out (and its charts drawn) at this width before printing, so that nothing drawn for
#: a wider screen (a legend, a colour bar) is cut off at the paper's edge.
A4_PRINT_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> Path:
    """Where Chromium is expected (from settings)."""
    from energy.settings import get_settings

    return get_settings().chromium_path


def chromium_available() -> bool:
    """True when Chromium and Playwright are installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return chromium_path().exists()


def html_to_pdf(
    html: str, out: Path, *, wait_for_plots: bool = True, timeout_s: float = 60.0
) -> Path:
    """Print ``html`` to the PDF file ``out`` (A4, backgrounds on) and return ``out``.

    Raises
    ------
    NoaberError
        When Chromium or Playwright is missing, or printing fails.
    """
    exe = chromium_path()
    if not exe.exists():
        raise NoaberError(
            f"PDF needs Chromium at {exe} (Debian: apt-get install chromium; or set NOABER_CHROMIUM_PATH)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - a dev dependency in every install
        raise NoaberError(
            "PDF needs the Python package playwright (pip install playwright)"
        ) from exc
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="noaber-pdf-") as tmp:
        page_file = Path(tmp) / "page.html"
        page_file.write_text(html, encoding="utf-8")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=str(exe), args=CHROMIUM_ARGS, headless=True
                )
                try:
                    page = browser.new_page(viewport={"width": A4_PRINT_WIDTH_PX, "height": 1000})
                    page.emulate_media(media="print")
                    page.goto(page_file.as_uri(), wait_until="load", timeout=timeout_s * 1000)
                    if wait_for_plots:
                        page.wait_for_function(
                            "() => !window.Plotly || Array.from(document.querySelectorAll('.plotly-graph-div'))"
                            ".every(d => d._fullLayout)",
                            timeout=timeout_s * 1000,
                        )
                    page.emulate_media(media="print")
                    page.pdf(
                        path=str(out),
                        format="A4",
                        print_background=True,
                        margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"},
                    )
                finally:
                    browser.close()
        except NoaberError:
            raise
        except Exception as exc:
            raise NoaberError(f"printing PDF {out} failed: {exc}") from exc
    return out
