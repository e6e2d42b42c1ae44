"""The HTML report in a real browser: offline, plots drawn, audio players load their clips."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from knobcap.evaluation.report import load_run, write_report
from knobcap.runtime.render import load_renderer
from playkit import RATE, make_run


def test_report_opens_offline_with_plots_and_players(tmp_path, page, screenshot):
    run_dir = make_run(tmp_path)
    renderer = load_renderer(run_dir / "model.knobcap")
    signal = np.asarray(0.3 * np.sin(np.linspace(0, 1400, RATE * 7)), np.float32)
    rows = {r.take: r.setting for r in load_run(run_dir).rows}
    session = SimpleNamespace(input=lambda: SimpleNamespace(audio=signal, map=None),
                              aligned_take=lambda take: 0.9 * renderer.render(signal, rows[take]))
    path = write_report(run_dir, renderer=renderer, session=session)

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    assert "knobcap report" in page.title()
    images = page.locator("figure img")
    assert images.count() == 4
    for i in range(images.count()):  # every plot decoded to a real picture
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 200")
    players = page.locator("audio")
    assert players.count() == 2 * 3 + 2
    durations = page.evaluate("""() => Promise.all([...document.querySelectorAll('audio')].map(a =>
        new Promise(done => { a.preload = 'metadata'; a.onloadedmetadata = () => done(a.duration);
                              a.onerror = () => done(-1); a.load(); })))""")
    assert all(abs(d - 6.0) < 0.05 for d in durations), durations
    assert page.locator("#settings-table tr.holdout").count() == 2
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # nothing from a network
    assert page.js_errors == []
    screenshot(page, "report")
