"""Open an HTML page in headless Chromium: did every image load, did the console stay quiet?

Used by the report tests, and by hand to look at a report:

    python tests/report/browser.py runs/demo/report.html [screenshot.png]

The page is checked through an instrumented copy (the original is never touched): a small
probe script, inserted first in ``<head>``, records errors (script errors, resources that
failed to load, Content-Security-Policy violations, ``console.error``) and, on ``load``, each
image's ``naturalWidth``, rendered width and figure caption, and each table's rendered and scroll
widths; Chromium's ``--dump-dom`` hands the result back. The copy's
Content-Security-Policy, if any, is widened just enough to run the probe, so a page that
fetches anything it forbids still fails. Console lines Chromium logs to stderr are scanned too.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0")
TIMEOUT_S = 60

PROBE = """<script>
(() => {
  const errors = [];
  const what = t => t.src || t.href || t.tagName;
  addEventListener("error", e => errors.push(e.message || "failed to load " + what(e.target)), true);
  addEventListener("unhandledrejection", e => errors.push("unhandled rejection: " + e.reason));
  document.addEventListener("securitypolicyviolation",
    e => errors.push("CSP blocked " + e.blockedURI + " (" + e.violatedDirective + ")"));
  const consoleError = console.error;
  console.error = (...args) => { errors.push(args.join(" ")); consoleError(...args); };
  addEventListener("load", () => {
    const caption = img => {
      const figure = img.closest("figure");
      const text = figure && figure.querySelector("figcaption");
      return text ? text.textContent.trim() : null;
    };
    const images = [...document.images].map(
      img => ({alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
               width: img.getBoundingClientRect().width, caption: caption(img),
               section: (img.closest("section") || {}).id || null}));
    const tables = [...document.querySelectorAll("table")].map(table => ({
      caption: (table.caption || {}).textContent || "", section: (table.closest("section") || {}).id || null,
      width: table.parentElement.clientWidth, scrollWidth: table.parentElement.scrollWidth}));
    const out = document.createElement("pre");
    out.id = "df-probe";
    out.textContent = JSON.stringify({images, tables, errors});
    document.body.appendChild(out);
  });
})();
</script>"""


@dataclass
class PageCheck:
    """What the probe saw: one entry per ``<img>`` (``alt``, ``complete``, ``naturalWidth``,
    rendered ``width`` in CSS pixels, its ``<figure>``'s ``caption`` or ``None``, its ``section``),
    one per ``<table>`` (``caption``, ``section``, the ``width`` of its box and the ``scrollWidth``
    of its content: wider means a horizontal scroll bar) and every error, from the page and the console."""

    images: list[dict] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[dict]:
        return [img for img in self.images if not (img["complete"] and img["naturalWidth"] > 0)]


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable, or ``None``."""
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def instrument(page: str) -> str:
    """``page`` with the probe first in ``<head>`` and its CSP (if any) allowing that inline script."""
    page = re.sub(r'(http-equiv="Content-Security-Policy" content=")([^"]*)"',
                  lambda m: f"{m[1]}{m[2]}; script-src 'unsafe-inline'\"", page, count=1)
    return re.sub(r"<head>", "<head>\n" + PROBE, page, count=1)


def _chromium(chromium: str, args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    profile = workdir / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _console_errors(stderr: str) -> list[str]:
    """Console lines Chromium logged that report an error."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line and re.search(r"Uncaught|Error|Refused|Failed", line)]


def check_page(page: Path, chromium: str, workdir: Path, size: tuple[int, int] = (1280, 2400)) -> PageCheck:
    """Load an instrumented copy of ``page`` in a window of ``size`` pixels; report its images, tables, errors."""
    copy = workdir / f"probe-{page.name}"
    copy.write_text(instrument(page.read_text(encoding="utf-8")), encoding="utf-8")
    done = _chromium(chromium, [f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000", "--dump-dom",
                                copy.as_uri()], workdir)
    match = re.search(r'<pre id="df-probe">(.*?)</pre>', done.stdout, re.S)
    if match is None:
        raise RuntimeError(f"the probe did not report (exit {done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(html.unescape(match[1]))
    return PageCheck(images=result["images"], tables=result["tables"],
                     errors=result["errors"] + _console_errors(done.stderr))


def screenshot(page: Path, out: Path, chromium: str, workdir: Path, size: tuple[int, int] = (1280, 2400)) -> Path:
    """Render ``page`` (as it is, no probe) to the PNG ``out``, a window of ``size`` pixels."""
    _chromium(chromium, [f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", page.resolve().as_uri()],
              workdir)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot {out}")
    return out


def main(argv: list[str]) -> int:
    """Check a page and optionally screenshot it; exit 1 on a broken image or an error."""
    if not argv or len(argv) > 2:
        print(__doc__.split("\n\n")[1])
        return 2
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium found (apt-get install chromium)")
        return 2
    page = Path(argv[0])
    with tempfile.TemporaryDirectory() as tmp:
        check = check_page(page, chromium, Path(tmp))
        if len(argv) == 2:
            screenshot(page, Path(argv[1]), chromium, Path(tmp))
    print(f"{len(check.images)} images, {len(check.broken_images)} broken, {len(check.errors)} errors")
    for problem in [*check.broken_images, *check.errors]:
        print(f"  {problem}")
    return 1 if check.broken_images or check.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
