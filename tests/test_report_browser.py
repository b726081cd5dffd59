"""The HTML report in a real browser: Debian's headless Chromium driven by playwright, page opened from file://.

Nothing is downloaded: playwright launches /usr/bin/chromium (``.ci/setup-browser.sh`` installs it with
apt). Every player must load its clip's metadata, no request may fail and no console error appear,
a header click sorts, the label filter hides rows, and starting a player pauses the others.

Chromium's media loader cancels its own reads of a clip once it has what it wants (metadata) or to reissue
them as range reads; playwright reports those as ``net::ERR_ABORTED`` on the .wav URL. They are not failures
(each clip's loadedmetadata with the right duration is checked), so only they are let through; every other
failed request, on any URL, fails the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.report import build_report
from tests.report_records import LIR_SLUG, REPORT_DATASET

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
N_STIMULI = 6
CLIP_SECONDS = 4.0  # tiny-sound clips


def _failed(request, problems: list[str]) -> None:
    if request.url.endswith(".wav") and request.failure == "net::ERR_ABORTED":
        return  # the media loader cancelling its own read (see the module docstring)
    problems.append(f"request failed: {request.url} ({request.failure})")


def _chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; install it with .ci/setup-browser.sh (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture
def page(report_runs, tiny_catalogue, tmp_path):
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    result = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path / "reports", max_stimuli=N_STIMULI)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(exe), args=CHROMIUM_ARGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            pg.on("requestfailed", lambda r: _failed(r, problems))
            pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            pg.goto(result.path.resolve().as_uri())
            yield pg, result, problems
        finally:
            browser.close()


def _visible_rows(pg) -> list[str]:
    return pg.eval_on_selector_all("#stimuli tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.id)")


def test_players_load_sort_filter_and_pause_each_other(page, tmp_path):
    pg, result, problems = page
    assert pg.title() == f"{REPORT_DATASET}: reconstructions"

    # every player: preload="none", so ask each to load, then wait for loadedmetadata with the clip's duration
    durations = pg.evaluate(
        """() => Promise.all(Array.from(document.querySelectorAll('audio')).map(a => new Promise((resolve) => {
               a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
               a.addEventListener('error', () => resolve('error: ' + (a.error && a.error.code)), {once: true});
               a.preload = 'metadata'; a.load();
           })))"""
    )
    assert len(durations) == result.n_players == N_STIMULI * result.n_columns
    assert all(isinstance(d, (int, float)) and abs(d - CLIP_SECONDS) < 1e-3 for d in durations), durations
    # every image decoded (thumbnails are lazy: scroll them all into view first)
    pg.evaluate("() => document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    pg.wait_for_function("() => Array.from(document.querySelectorAll('img')).every(i => i.complete && i.naturalWidth > 0)")

    # clicking a header sorts: by index descending after two clicks
    order = _visible_rows(pg)
    header = pg.locator('#stimuli th[data-key="index"]')
    header.click()
    assert _visible_rows(pg) == order  # already ascending by index
    header.click()
    assert _visible_rows(pg) == list(reversed(order))
    # a per-method metric button sorts by that metric, ascending
    pg.locator(f'#stimuli button[data-key="{LIR_SLUG}:pcc"]').click()
    values = pg.eval_on_selector_all(
        "#stimuli tbody tr", f"rows => rows.map(r => JSON.parse(r.getAttribute('data-sort'))['{LIR_SLUG}:pcc'])")
    assert values == sorted(values)
    # summary table: clicking the PCC header orders the method rows
    pg.locator("#summary th[data-col='1']").click()
    assert pg.locator("#summary th.sorted-asc").count() == 1

    # the label filter hides the rows of other labels
    labels = pg.eval_on_selector_all("#stimuli tbody tr", "rows => rows.map(r => r.getAttribute('data-label'))")
    chosen = sorted(set(labels))[0]
    pg.select_option("#filter-label", chosen)
    shown = pg.eval_on_selector_all("#stimuli tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.getAttribute('data-label'))")
    assert shown and set(shown) == {chosen} and len(shown) == labels.count(chosen) < len(labels)
    pg.select_option("#filter-label", "")
    assert len(_visible_rows(pg)) == len(labels)
    # the method filter hides that method's column
    pg.locator(f'input.filter-method[value="{LIR_SLUG}"]').uncheck()
    assert not pg.locator(f"#stimuli td.col-{LIR_SLUG}").first.is_visible()
    pg.locator(f'input.filter-method[value="{LIR_SLUG}"]').check()

    # A/B listening: starting a second player pauses the first (a click first: user activation for play())
    pg.mouse.click(5, 5)
    state = pg.evaluate(
        """async () => {
             const players = document.querySelectorAll('#stimuli audio');
             const [a, b] = [players[0], players[1]];
             a.muted = true; b.muted = true;
             await a.play();
             const aPlaying = !a.paused;
             await b.play();
             await new Promise(r => setTimeout(r, 50));
             const out = {aPlaying, aPausedAfter: a.paused, bPlaying: !b.paused};
             b.pause();
             return out;
           }"""
    )
    assert state == {"aPlaying": True, "aPausedAfter": True, "bPlaying": True}

    shot = tmp_path / "report.png"
    pg.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    assert problems == [], "\n".join(problems)


def test_embedded_report_plays_from_one_file(report_runs, tiny_catalogue, tmp_path):
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    result = build_report(REPORT_DATASET, runs=report_runs, out=tmp_path / "r", max_stimuli=2, embed=True)
    alone = tmp_path / "alone" / "page.html"  # moved away from its build folder: nothing may be linked
    alone.parent.mkdir()
    shutil.copyfile(result.path, alone)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(exe), args=CHROMIUM_ARGS, headless=True)
        try:
            pg = browser.new_page()
            pg.on("requestfailed", lambda r: _failed(r, problems))
            pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            pg.goto(alone.resolve().as_uri())
            durations = pg.evaluate(
                """() => Promise.all(Array.from(document.querySelectorAll('audio')).map(a => new Promise((resolve) => {
                       a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
                       a.addEventListener('error', () => resolve('error'), {once: true});
                       a.preload = 'metadata'; a.load();
                   })))"""
            )
        finally:
            browser.close()
    assert len(durations) == result.n_players and all(d == pytest.approx(CLIP_SECONDS, abs=1e-3) for d in durations)
    assert problems == []
