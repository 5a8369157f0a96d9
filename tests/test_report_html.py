"""The release report's HTML page: everything in the document shows, nothing runs or loads that
should not, and headless Chromium draws every plot without a console error."""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import io
import re
import time
from pathlib import Path

import pytest
from PIL import Image
from report_fixture import (
    HOSTILE,
    SAMPLE_PLOTS,
    STRIPPED_PLOTS,
    sample_report,
    with_hostile_text,
    without_optional_parts,
)

from treum.commands.report_html import (
    CSP,
    EXPLAINERS,
    console_errors,
    find_chromium,
    fmt,
    render_html,
    run_chromium,
    screenshot,
    with_ci,
)

PLOT = re.compile(r'<img alt="[^"]*" data-plot="([^"]+)" src="data:image/png;base64,([^"]+)">')


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(sample_report())


def visible_text(page: str) -> str:
    """The page as a reader sees it: tags dropped, entities decoded (scripts and styles out)."""
    body = re.sub(r"<(script|style)>.*?</\1>", " ", page, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def model_section(page: str, name: str) -> str:
    start = page.index(f"<h2>{name} v")
    end = page.find("<section", start)
    return page[start:end]


# --- what the page shows ----------------------------------------------------------------------


def test_numbers_have_four_decimals_and_cis_sit_beside_them() -> None:
    assert [fmt(0.61), fmt(1200), fmt(True), fmt(None), fmt(float("nan"))] == [
        "0.6100", "1200", "yes", "-", "-",
    ]  # fmt: skip
    full = {"a": 0.61, "a_ci_low": 0.6, "a_ci_high": 0.62}
    assert with_ci(full, "a") == "0.6100 [0.6000, 0.6200]"
    assert with_ci({"a": 0.61, "a_ci_low": 0.6}, "a") == "0.6100"  # half a CI is no CI


def test_every_model_metric_check_and_audit_row_shows(page: str) -> None:
    doc, text = sample_report(), visible_text(page)
    for part in (doc["release"], doc["created_by"], doc["treum_version"], doc["registry"]):
        assert part in text
    assert "Simulated data: the users, their trades and their feedback are generated" in text
    for m in doc["models"]:
        section = visible_text(model_section(page, m["name"]))
        for part in (m["task"], m["family"], m["status"], m["description"], m["artifact_sha256"],
                     m["data"]["name"], m["card"]["intended_use"], m["card"]["scheme"],
                     *m["card"]["limitations"], *m["data"]["period"]["test"]):  # fmt: skip
            assert part in section, part
        for row in m["metrics"]["rows"]:
            assert row["label"] in section
            for key, value in row["metrics"].items():
                assert key.rsplit("_ci_", 1)[0] in section and fmt(value) in section, key
        ex = m["explanations"]
        assert all(f["feature"] in section for f in ex["importance"]["importances"])  # all 18
        assert all(w["condition"] in section for w in ex["lime"]["weights"])
        assert ex["decision_tree"]["rules"].splitlines()[0] in section
        assert ex["counterfactual"]["rows"][0]["row"] in section
    ranking = model_section(page, "ltr_lambdarank")
    assert "0.6100 [0.6000, 0.6200]" in ranking and "0.5000 [0.4800, 0.5200]" in ranking
    assert "ndcg_at_5 [95% CI]" in ranking and "hit_at_1 [95% CI]" not in ranking
    for check in doc["models"][0]["fairness"]["checks"]:
        assert f"{check['check']}</td><td>{check['segment']}</td>" in ranking
    assert ranking.count('<td class="pass">PASS</td>') == 2
    assert ranking.count('<td class="fail">FAIL</td>') == 1
    assert "f_signal_sharpe_60d" in visible_text(ranking.split("<h3>Drift</h3>")[1])
    direction = visible_text(model_section(page, "gbm_direction"))
    assert "coverage 0.8930 vs target 0.9000 (-0.0070 against the target)" in direction
    for row in doc["audit"]:
        assert f"<td>{row['at']}</td><td>{row['actor']}</td><td>{row['action']}</td>" in page
        assert row["reason"] in text
    assert all(note in text for note in doc["notes"])


def test_the_table_of_contents_links_every_section(page: str) -> None:
    targets = re.findall(r'<a href="#([^"]+)">', page)
    assert len(targets) == 2 + 2  # two models, the audit trail, the notes
    assert all(f'id="{t}"' in page for t in targets)


@pytest.mark.parametrize("part", [*EXPLAINERS, "fairness", "drift"])
def test_a_missing_part_says_not_computed_and_why(part: str) -> None:
    doc = sample_report()
    ranking = doc["models"][0]
    doc["models"] = [ranking]  # one model renders faster, and the sections are its own
    target = ranking if part in ("fairness", "drift") else ranking["explanations"]
    target[part] = None
    ranking["explanations"]["skipped"][part] = f"no {part} for <this> model"
    assert f"not computed: no {part} for &lt;this&gt; model" in render_html(doc)


def test_a_report_missing_many_parts_renders_them_all_as_not_computed() -> None:
    page = render_html(without_optional_parts())
    text = visible_text(page)
    assert "not computed: no TreeExplainer for LambdaRank's objective" in text
    assert "not computed: the task 'ranking' defines no calibrated target" in text
    # ranking: shap, lime, counterfactual, conformal, fairness, drift; direction: 6 explainers,
    # fairness, drift
    assert text.count("not computed") == 6 + 8
    assert len(PLOT.findall(page)) == STRIPPED_PLOTS
    empty = render_html({})  # not even a release name: still a page
    assert "no audit rows" in empty and "no notes" in empty and "data-plot=" not in empty


def test_an_unknown_explainer_still_shows_as_json() -> None:
    doc = sample_report()
    doc["models"][1]["explanations"]["anchors"] = {"precision": 0.93, "rule": "rsi_14 > 70"}
    section = model_section(render_html(doc), "gbm_direction")
    assert "&quot;rule&quot;: &quot;rsi_14 &gt; 70&quot;" in section


# --- what the page does not do ----------------------------------------------------------------


def test_user_text_is_escaped_not_run() -> None:
    page = render_html(with_hostile_text())
    assert HOSTILE not in page and "<img src=x" not in page
    assert html.escape(HOSTILE) in page  # shown, as text
    assert page.count("<script") == 1  # the page's own, and only it
    assert HOSTILE in visible_text(page)


def test_nothing_is_loaded_from_anywhere(page: str) -> None:
    doc = sample_report()
    doc["notes"].append("see https://example.com/x.png and http://example.com")
    page = render_html(doc)
    refs = re.findall(r'\b(?:src|href|action|poster|srcset)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs), refs
    assert "url(" not in page and "@import" not in page and "<link" not in page
    # A URL in the document is text, never a link: the only ones on the page are in the note.
    assert page.count("http://") == page.count("https://") == 1
    # Belt and braces: the browser itself is told to fetch nothing but inline images.
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert "default-src 'none'" in CSP and "img-src data:" in CSP


def test_the_policy_lets_the_pages_own_script_run(page: str) -> None:
    script = re.search(r"<script>(.*?)</script>", page, flags=re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CSP  # else Chromium would refuse it and count no plots
    assert "fetch" not in script and "XMLHttpRequest" not in script and "import" not in script


def test_one_small_png_per_expected_plot(page: str) -> None:
    plots = PLOT.findall(page)
    assert len(plots) == SAMPLE_PLOTS == page.count("<img ")
    assert f'data-plots-expected="{SAMPLE_PLOTS}"' in page
    names = [name for name, _ in plots]
    assert len(set(names)) == len(names)
    assert {"ltr_lambdarank:fairness:region", "gbm_direction:primary_metric"} <= set(names)
    for _, b64 in plots:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "PNG" and img.width == 600 and 200 <= img.height <= 600


def test_rendering_is_pure(page: str) -> None:
    doc = sample_report()
    before = copy.deepcopy(doc)
    assert render_html(doc) == page  # same document, same bytes (no dates, no randomness)
    assert doc == before


# --- the page in a real browser -----------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium not installed (apt-get install chromium); the page is only "
    "checked as text",
)


def dump_dom(path: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after the load event, and the page's console lines."""
    done = run_chromium(path, "--dump-dom", user_data_dir=tmp_path / "profile-dom")
    return done.stdout, console_errors(done.stderr)


@needs_chromium
def test_chromium_draws_every_plot_without_a_console_error(tmp_path: Path) -> None:
    # The hostile document: a browser that ran its markup would log a CSP refusal or an alert.
    path = tmp_path / "report.html"
    path.write_text(render_html(with_hostile_text()), encoding="utf-8")
    started = time.perf_counter()
    dom, errors = dump_dom(path, tmp_path)
    assert errors == []
    assert f'data-plots-drawn="{SAMPLE_PLOTS}"' in dom
    assert html.escape(HOSTILE) in dom and HOSTILE not in dom

    png = tmp_path / "report.png"
    shot = screenshot(path, png, size=(1280, 2400), user_data_dir=tmp_path / "profile-shot")
    assert console_errors(shot.stderr) == []
    img = Image.open(png).convert("RGB")
    assert img.size == (1280, 2400)
    # Not blank: text, the banner and plots give many colours and plenty of non-white pixels.
    small = img.resize((320, 600))
    pixels = list(small.getdata())
    assert len(set(pixels)) > 200
    assert sum(p != (255, 255, 255) for p in pixels) / len(pixels) > 0.05
    print(f"chromium: dump-dom and screenshot in {time.perf_counter() - started:.1f}s")


@needs_chromium
@pytest.mark.parametrize("breakage", ["inline script", "uncaught throw", "broken plot"])
def test_the_browser_checks_can_fail(tmp_path: Path, page: str, breakage: str) -> None:
    # Each check above must be able to see a broken page, or passing it proves nothing.
    if breakage == "inline script":  # not the page's own script: the CSP refuses to run it
        broken = page.replace("</body>", '<script>throw new Error("deliberate")</script></body>')
    elif breakage == "uncaught throw":  # no CSP, so the throw itself reaches the console
        broken = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
        broken = broken.replace("</body>", '<script>throw new Error("deliberate")</script></body>')
    else:  # one image whose bytes are not a PNG
        broken = re.sub(r"base64,[^\"]+", "base64,AAAA", page, count=1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    dom, errors = dump_dom(path, tmp_path)
    if breakage == "broken plot":
        assert f'data-plots-drawn="{SAMPLE_PLOTS - 1}"' in dom
    else:
        assert errors, "a script error went unnoticed"
        # What Chromium 156 prints (as INFO:CONSOLE lines, whatever the console level).
        expected = {"inline script": "violates the following Content Security Policy",
                    "uncaught throw": "Uncaught Error: deliberate"}[breakage]  # fmt: skip
        assert any(expected in e for e in errors), errors
