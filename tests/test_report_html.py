"""report.html: written beside report.json from a real run, self-contained, and shown by a real
headless Chromium (Debian's package; ops/ci/install-chromium.sh) without console errors and with
a screenshot that is not blank."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from tornado.websocket import websocket_connect

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.domain import PairStatus
from bqx_queue.report.build import report_schema, write_report
from bqx_queue.report.html import render_html, shap_by_horizon
from bqx_queue.runner.processes import stop_process

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_report_html_is_written_beside_report_json_and_is_self_contained(
    finished_run: RunStore,
) -> None:
    page_path = finished_run.root / "report.html"
    assert page_path.exists() and finished_run.report_path.exists()
    page = page_path.read_text()
    data = json.loads(finished_run.report_path.read_text())

    # one file: no script, stylesheet, image or font fetched from anywhere; links only within the page
    assert not re.search(r"""src\s*=\s*['"]""", page)
    assert page.count("<script") == 1 and "<script>\n" in page  # the inline one: sorting, filtering
    assert "@import" not in page and "url(http" not in page
    ids = set(re.findall(r"""\sid='([^']+)'""", page))
    links = re.findall(r"""href\s*=\s*['"]([^'"]*)""", page)
    assert links and all(link.startswith("#") and link[1:] in ids for link in links), set(links) - ids
    assert page.count("<svg") >= 5  # cost, heatmap, stable across pairs, SHAP (per horizon), timeline

    for title in ("What this run found", "Pairs: confirmed findings per pair and horizon", "Cost per pair",
                  "Features stable in the most pair-horizons", "SHAP: top features per horizon",
                  "Timeline: pair tasks per worker process", "Operations: run, cost, workers"):  # fmt: skip
        assert title in page
    # the answer before the pairs, the pairs before operations
    assert page.index("What this run found") < page.index("<h2>Pairs") < page.index("<h2>Operations")
    # every pair in the cost table and the heatmap, with the process that ran it
    for pair in data["pairs"]:
        assert page.count(f">{pair['pair']}<") >= 3
        assert f"{pair['host']} pid {pair['pid']}" in page
    # the heatmap has a cell per pair x horizon carrying its count and linking to the pair's findings there
    for pair in data["pairs"]:
        for horizon, result in pair["horizons"].items():
            assert f"{pair['pair']} h{horizon}: {result['n_stable']} stable" in page
            assert f"<a href='#pair-{pair['pair']}-h{horizon}'>" in page
            assert f"<div class='horizon' id='pair-{pair['pair']}-h{horizon}'>" in page
    # the timeline has one lane per worker process, one bar per pair
    processes = {(p["host"], p["pid"]) for p in data["pairs"]}
    assert f"Pair tasks per worker process ({len(processes)} processes)" in page
    assert len(re.findall(r"<title>\w{6} on .+? pid \d+: [\d.,]+ s to [\d.,]+ s</title>", page)) == len(data["pairs"])
    # the most stable feature and the strongest SHAP feature of the first horizon are shown
    assert data["features_across_pairs"][0]["feature"] in page
    first_horizon = str(data["run"]["horizons"][0])
    top_feature, top_value, _ = shap_by_horizon(finished_run.report())[first_horizon][0]
    assert top_value > 0 and top_feature in page
    # the producer's estimate, per pair, beside the actual cost
    estimate = finished_run.manifest().estimate
    assert estimate is not None
    assert sorted(estimate.per_pair_usd) == sorted(p["pair"] for p in data["pairs"])
    for pair in data["pairs"]:
        assert f"<td>${estimate.per_pair_usd[pair['pair']]:.4f}</td><td>${pair['cost_usd']:.4f}</td>" in page
    assert "no cost estimate" not in page
    # answers across pairs: the family heatmap, error accounting, approval; effect sizes in each pair's section
    for title in ("Feature families across pairs", "Approval and pilot projection"):
        assert title in page
    # every confirmed finding is in its pair-horizon's section, with its effect (the planted signal
    # gives findings, family cells and effect sizes: none of the loops below may pass empty)
    assert data["confirmation"]["findings"] and data["families"]["cells"] and data["effect_sizes"]
    for row in data["confirmation"]["findings"]:
        section = page.split(f"id='pair-{row['pair']}-h{row['horizon']}'>", 1)[1].split("</div>", 1)[0]
        assert f"<code>{row['feature']}</code>" in section and f"{row['effect']:+.4f}" in section
    assert f"up to {data['error_accounting']['error_bound_sum']:.1f} of them may be false" in page
    assert "Pairs in which each family is confirmed" in page
    for row in data["effect_sizes"]:
        assert f"{row['auc']['estimate']:.3f} <span class='note'>[{row['auc']['low']:.3f}" in page


def test_cost_estimate_is_shown_beside_the_actual_cost_when_the_manifest_has_one(
    finished_run: RunStore,
) -> None:
    report = finished_run.report()
    written = finished_run.manifest()
    assert written.estimate is not None
    pairs = {
        "eurusd": written.estimate.pairs["eurusd"].model_copy(update={"bytes_billed": 2 * 1024**4, "cost_usd": 12.5}),
        "gbpusd": written.estimate.pairs["gbpusd"].model_copy(update={"cost_usd": 0.0421}),
    }
    estimate = written.estimate.model_copy(update={"cost_usd": 0.123456, "pairs": pairs})
    manifest = written.model_copy(update={"estimate": estimate})
    assert manifest.estimate is not None
    assert manifest.estimate.per_pair_usd == {"eurusd": 12.5, "gbpusd": 0.0421}
    page = render_html(report, manifest)
    assert "$0.1235" in page  # the run's estimated total
    assert "<td>$12.5000</td>" in page and "<td>$0.0421</td>" in page  # per pair, in the table
    assert "estimate: $12.5000" in page  # the tick on the cost chart
    assert "no cost estimate" not in page

    # A manifest written before estimates existed: actual cost only, and the page says so.
    older = written.model_copy(update={"estimate": None})
    assert older.estimate is None
    page = render_html(report, older)
    assert "no cost estimate" in page and "estimate: $" not in page


def test_failed_pair_is_shown_in_red_and_the_report_still_validates(finished_run: RunStore, tmp_path: Path) -> None:
    store = RunStore(tmp_path, finished_run.run_id)
    shutil.copytree(finished_run.root, store.root)
    summary = store.pair_summary("usdjpy")
    assert summary is not None
    failed = {"status": PairStatus.FAILED, "error": "table bqx_features.reg_usdjpy is missing", "horizons": {}}
    store.write_pair_summary(summary.model_copy(update=failed))
    data = json.loads(write_report(store).read_text())
    page = (store.root / "report.html").read_text()
    assert data["totals"]["pairs_failed"] == 1
    assert "Failed pairs" in page and "table bqx_features.reg_usdjpy is missing" in page
    assert "usdjpy h15: no result (failed)" in page
    assert "usdjpy on " in page and "(failed)</title>" in page  # its bar in the timeline, marked failed
    assert {"type": "string"} in report_schema()["$defs"]["ReportPair"]["properties"]["worker"]["anyOf"]


# A real browser -------------------------------------------------------------------------------


class Browser:
    """Headless Chromium driven over the DevTools protocol (a websocket, via tornado)."""

    def __init__(self, profile: Path) -> None:
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1200,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.port = self._devtools_port()

    def _devtools_port(self, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        assert self.process.stderr is not None
        seen = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            seen.append(line)
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                # keep reading what chromium logs, or a full pipe would stall it
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                return int(found.group(1))
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError(f"chromium did not start: {''.join(seen)[-2000:]}")

    def page_websocket(self) -> str:
        targets = requests.get(f"http://127.0.0.1:{self.port}/json/list", timeout=10).json()
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def close(self) -> None:
        stop_process(self.process)


# What Chromium shows of each <section> whose heading starts with a given title: its rendered box,
# its visible text (innerText: nothing hidden or unrendered) and the SVG text labels in it.
SECTIONS = """(title) => [...document.querySelectorAll('section')]
    .filter(s => (s.querySelector('h2')?.innerText || '').startsWith(title))
    .map(s => { const r = s.getBoundingClientRect(); return {
        width: r.width, height: r.height, text: s.innerText,
        svg_labels: [...s.querySelectorAll('svg text')].map(t => t.textContent),
        svg_boxes: [...s.querySelectorAll('svg')].map(g => { const b = g.getBoundingClientRect();
            return [b.width, b.height]; }) }; })"""


async def _devtools(
    websocket_url: str, problems: list[str], loaded: asyncio.Event
) -> tuple[Any, Callable[..., Awaitable[dict[str, Any]]]]:
    """Connect to a page's DevTools and return the connection (to close) and call(method, **params),
    which sends one command and returns its result; on the way, console errors, exceptions and error log entries go to
    `problems`, and the page's load event sets `loaded`."""
    connection = await websocket_connect(websocket_url, max_message_size=256 * 1024**2)
    ids = iter(range(1, 10_000))

    async def call(method: str, **params: Any) -> dict[str, Any]:
        number = next(ids)
        await connection.write_message(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(connection.read_message(), 60)
            assert message is not None, "DevTools connection closed"
            event = json.loads(message)
            method_name = event.get("method", "")
            if method_name == "Runtime.consoleAPICalled" and event["params"]["type"] in ("error", "assert"):
                problems.append("console: " + json.dumps(event["params"]["args"])[:500])
            elif method_name == "Runtime.exceptionThrown":
                problems.append("exception: " + json.dumps(event["params"]["exceptionDetails"])[:500])
            elif method_name == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
                problems.append("log: " + event["params"]["entry"]["text"])
            elif method_name == "Page.loadEventFired":
                loaded.set()
            if event.get("id") == number:
                if "error" in event:
                    raise RuntimeError(f"{method}: {event['error']}")
                return event["result"]

    return connection, call


async def _visit(websocket_url: str, url: str, width: int = 1200, sections: tuple[str, ...] = ()) -> dict[str, Any]:
    """Open `url`, wait for load, and return console problems, DOM facts, what is rendered of the
    sections titled `sections` (SECTIONS) and a full-page PNG."""
    problems: list[str] = []
    loaded = asyncio.Event()
    connection, call = await _devtools(websocket_url, problems, loaded)

    for domain in ("Page", "Runtime", "Log"):
        await call(f"{domain}.enable")
    await call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    await call("Page.navigate", url=url)
    deadline = time.monotonic() + 60
    while not loaded.is_set():
        assert time.monotonic() < deadline, f"{url} did not finish loading within 60 s"
        await call("Runtime.evaluate", expression="1")  # pumps events until the load event
        await asyncio.sleep(0.05)
    facts = await call(
        "Runtime.evaluate",
        returnByValue=True,
        expression="""({
            svgs: [...document.querySelectorAll('svg')].map(s => {
                const r = s.getBoundingClientRect(); return [r.width, r.height]; }),
            height: document.documentElement.scrollHeight,
            title: document.title,
            text: document.body.innerText.length,
        })""",
    )
    rendered = {}
    for title in sections:
        found = await call("Runtime.evaluate", returnByValue=True, expression=f"({SECTIONS})({json.dumps(title)})")
        rendered[title] = found["result"]["value"]
    await call("Runtime.evaluate", expression="new Promise(r => setTimeout(r, 200))", awaitPromise=True)
    shot = await call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": width, "height": facts["result"]["value"]["height"], "scale": 1},
    )
    connection.close()
    return {
        "problems": problems,
        "facts": facts["result"]["value"],
        "sections": rendered,
        "png": base64.b64decode(shot["data"]),
    }


@pytest.fixture()
def browser(tmp_path: Path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must call ops/ci/install-chromium.sh")
        pytest.skip("chromium is not installed (run ops/ci/install-chromium.sh)")
    browser = Browser(Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)))
    yield browser
    browser.close()


def _distinct_colours(png: bytes) -> tuple[int, float, tuple[int, int]]:
    """Return (distinct colours, share of pixels that are not white, image size)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    white = sum(count for count, colour in colours if colour == (255, 255, 255))
    pixels = image.width * image.height
    return len(colours), 1 - white / pixels, image.size


def test_the_browser_check_catches_console_errors(browser: Browser, tmp_path: Path) -> None:
    """The harness itself: a page that logs an error and throws must be caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.error('broken'); null.f();</script></body></html>")
    visit = asyncio.run(_visit(browser.page_websocket(), bad.as_uri()))
    assert any("broken" in p for p in visit["problems"]) and any("exception" in p for p in visit["problems"])


def test_report_html_renders_in_headless_chromium(finished_run: RunStore, browser: Browser) -> None:
    page = finished_run.root / "report.html"
    visit = asyncio.run(_visit(browser.page_websocket(), page.as_uri()))
    assert visit["problems"] == []
    facts = visit["facts"]
    assert facts["title"] == f"bqx-queue run {finished_run.run_id}"
    assert len(facts["svgs"]) >= 5 and all(w > 100 and h > 40 for w, h in facts["svgs"])
    assert facts["text"] > 1000 and facts["height"] > 1500

    screenshot = finished_run.root / "report.png"
    screenshot.write_bytes(visit["png"])
    colours, ink, size = _distinct_colours(visit["png"])
    assert size == (1200, facts["height"])
    assert colours >= 50, f"{colours} colours: the page looks blank ({screenshot})"
    assert 0.03 < ink < 0.6, f"{ink:.1%} of the page is not white ({screenshot})"


async def _first_screen_then_click(websocket_url: str, url: str, cell: str) -> dict[str, Any]:
    """Open `url` in a 1,400 x 1,000 window and return what the first screen shows (a screenshot
    of it, where the families heatmap and the findings tile are), then click the heatmap cell
    linking to `#cell` with the mouse and return where that landed."""
    problems: list[str] = []
    connection, call = await _devtools(websocket_url, problems, asyncio.Event())

    async def evaluate(expression: str) -> Any:
        found = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return found["result"].get("value")

    for domain in ("Page", "Runtime"):
        await call(f"{domain}.enable")
    await call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
    started = time.monotonic()
    await call("Page.navigate", url=url)
    while await evaluate("document.readyState") != "complete":
        await asyncio.sleep(0.02)
    load_s = time.monotonic() - started
    first_screen = await evaluate(
        """(() => { const box = e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, r.width]; };
            const families = [...document.querySelectorAll('svg')]
                .find(s => s.getAttribute('aria-label').startsWith('Pairs in which each family'));
            const findings = [...document.querySelectorAll('.card')]
                .find(c => c.innerText.includes('confirmed findings'));
            return { families: families ? box(families) : null, findings: findings ? box(findings) : null,
                     findings_text: findings ? findings.innerText : '', scroll: window.scrollY }; })()"""
    )
    shot = await call("Page.captureScreenshot", format="png")
    # the cell: scrolled into view, then clicked where a person would, on its centre
    where = await evaluate(
        f"""(() => {{ const a = document.querySelector("svg a[href='#{cell}']");
            a.scrollIntoView({{block: 'center'}}); const r = a.querySelector('rect').getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()"""
    )
    for kind in ("mousePressed", "mouseReleased"):
        await call("Input.dispatchMouseEvent", type=kind, x=where[0], y=where[1], button="left", clickCount=1)
    await evaluate("new Promise(r => setTimeout(r, 300))")
    landed = await evaluate(
        f"""(() => {{ const t = document.getElementById('{cell}'); const r = t.getBoundingClientRect();
            return {{ hash: location.hash, top: r.top, height: r.height, text: t.innerText,
                      open: t.closest('details').open }}; }})()"""
    )
    connection.close()
    return {"problems": problems, "load_s": load_s, "first_screen": first_screen, "landed": landed,
            "png": base64.b64decode(shot["data"])}  # fmt: skip


def test_the_first_screen_shows_the_answer_and_a_heatmap_cell_opens_its_pair(
    finished_run: RunStore, browser: Browser
) -> None:
    """Done-when of issue 20: a 1,400 x 1,000 screenshot holds the families heatmap and the
    confirmed-findings count, and a pair x horizon cell's link lands on that pair's findings."""
    report = finished_run.report()
    finding = report.confirmation.findings[0] if report.confirmation and report.confirmation.findings else None
    assert finding is not None, "the small warehouse's planted signal is confirmed somewhere"
    cell = f"pair-{finding.pair}-h{finding.horizon}"
    page = finished_run.root / "report.html"
    visit = asyncio.run(_first_screen_then_click(browser.page_websocket(), page.as_uri(), cell))
    assert visit["problems"] == []
    print(f"report.html: {page.stat().st_size:,} bytes, loaded in Chromium in {visit['load_s']:.2f} s")

    screen = visit["first_screen"]
    (finished_run.root / "first-screen.png").write_bytes(visit["png"])
    assert Image.open(io.BytesIO(visit["png"])).size == (1400, 1000)
    colours, ink, _ = _distinct_colours(visit["png"])
    assert colours >= 50 and 0.03 < ink < 0.6
    assert screen["scroll"] == 0
    families_top, families_bottom, families_width = screen["families"]
    assert families_top < 1000 and families_bottom <= 1000 and families_width > 200, screen
    findings_top, findings_bottom, _ = screen["findings"]
    assert 0 <= findings_top and findings_bottom <= 1000
    confirmed = len(report.confirmation.findings)
    assert screen["findings_text"].startswith(f"{confirmed}\n"), screen["findings_text"]

    landed = visit["landed"]
    assert landed["hash"] == f"#{cell}" and landed["open"], landed
    assert -1 <= landed["top"] < 1000 and landed["height"] > 40, landed  # at the top of the window, shown
    assert landed["text"].startswith(f"{finding.pair} h{finding.horizon}: ") and finding.feature in landed["text"]
