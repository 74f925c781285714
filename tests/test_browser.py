"""The studio in a real browser: Playwright driving Debian's chromium against an in-process server.

Test 1 walks the five tabs with the bundled reviews sample and the offline MiniLM: load data, see
the preview, set freeze depth and epochs, start, watch the loss curve gain points, see the run
finish, compare base and tuned predictions. It saves a screenshot of each tab into
assets/screenshots/ (the README shows them). Test 2 refreshes the page mid-run and finds the same
run with its curve still growing. Test 3 is the text-generation pass: SmolLM2, the identity sample,
a short LoRA run, then base and tuned answers side by side (generate-*.png). All skip when no
chromium can be found or installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-quic", "--no-first-run"]
SHOTS = ROOT / "assets" / "screenshots"
POINTS = ("() => { const g = document.querySelector('#monitor-loss .js-plotly-plot');"
          " return g && g.data && g.data.length ? g.data[0].x.length : 0; }")


def find_chromium() -> Path | None:
    """/usr/bin/chromium, installed with apt-get when missing and we are allowed to (root)."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            try:
                subprocess.run(cmd, capture_output=True, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired):
                break
    return CHROMIUM if CHROMIUM.exists() else None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and could not be installed")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=str(chromium), headless=True, args=ARGS)
        except Exception as exc:  # a broken install is an environment problem, not a studio bug
            pytest.skip(f"chromium does not start: {exc}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from test_app_api import free_port
    from studio.ui.layout import build_app, configure, launch
    demo = build_app()
    configure(demo, workspace=tmp_path_factory.mktemp("workspace"))
    port = free_port()
    launch(demo, port=port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.studio.manager.shutdown(timeout=60)
    demo.close()


def new_page(browser, url):
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    wait_loaded(page)
    return page


def wait_loaded(page) -> None:
    """The page-load event has run: the footer it writes is there."""
    page.wait_for_function("() => document.querySelector('.studio-footer')?.innerText.includes('Fine-Tune Studio')")


def wait_text(page, selector: str, text: str, timeout: float = 60.0) -> None:
    """Case-sensitive: Playwright's text= selector would also match 'Not loaded' for 'Loaded'."""
    page.wait_for_function(f"() => document.querySelector({selector!r})?.innerText.includes({text!r})",
                           timeout=timeout * 1000)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def fill(page, selector: str, value: str) -> None:
    box = page.locator(selector).first
    box.fill(value)
    box.press("Enter")
    box.blur()


def close_toasts(page) -> None:
    for button in page.locator("[data-testid=toast-close]").all():
        if button.is_visible():
            button.click()


def load_reviews(page, max_rows: str) -> None:
    open_tab(page, "② Data")
    fill(page, "#data-max-rows input", max_rows)
    page.click("#data-use-sample")
    page.wait_for_selector("#data-preview [role=grid]")
    page.wait_for_function("() => document.querySelector('#data-stats')?.innerText.includes('rows to learn from')",
                           timeout=120_000)


def start_training(page, *, depth: str, epochs: str, name: str) -> None:
    open_tab(page, "③ Train")
    page.wait_for_function("() => document.querySelector('#train-trainable')?.innerText.includes('parameters learn')")
    fill(page, "#trainspec-freeze-depth input[type=number]", depth)
    fill(page, "#trainspec-epochs input", epochs)
    fill(page, "#trainspec-learning-rate input", "0.001")
    fill(page, "#train-run-name textarea, #train-run-name input", name)
    page.wait_for_function(f"() => document.querySelector('#train-trainable')?.innerText.includes('block {int(depth) - 1}')")
    page.click("#train-start")
    wait_text(page, "#monitor-status", "Training")


def points(page) -> int:
    return page.evaluate(POINTS)


def wait_points(page, more_than: int, timeout: float = 180.0) -> int:
    page.wait_for_function(f"() => ({POINTS})() > {more_than}", timeout=timeout * 1000)
    return points(page)


def run_id(page) -> str:
    return page.locator("#monitor-status code").first.inner_text()


def test_five_tabs_from_data_to_comparison(browser, url, tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser, url)
    page.click("#model-load")
    wait_text(page, "#model-card", "✓ Loaded")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "model.png"), full_page=True)

    broken = tmp_path / "one_column.csv"          # an upload the engine must refuse, readably
    broken.write_text("text\nhello\nworld\n", encoding="utf-8")
    open_tab(page, "② Data")
    page.set_input_files("#data-upload input[type=file]", str(broken))
    page.wait_for_function("() => document.querySelector('#data-message')?.innerText.includes('two columns')")

    load_reviews(page, "120")
    assert "reviews.csv" in page.inner_text("#data-summary")
    assert int(page.get_attribute("#data-preview [role=grid]", "aria-rowcount")) > 5
    close_toasts(page)
    page.screenshot(path=str(SHOTS / "data.png"), full_page=True)

    open_tab(page, "③ Train")
    fill(page, "#trainspec-freeze-depth input[type=number]", "4")
    page.wait_for_function("() => document.querySelector('#train-trainable')?.innerText.includes('block 3')")
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
    # Enough epochs that the curve is still growing when the test looks (2 epochs took 3 s).
    start_training(page, depth="4", epochs="8", name="browser-test")

    first = wait_points(page, 0)
    growing = wait_points(page, first)
    # The status line says the number format this machine trains a classifier in.
    from studio.training.device import training_precision
    expected = training_precision("classify").dtype
    assert growing > first and f"Training in {expected}" in page.inner_text("#monitor-status")
    wait_text(page, "#monitor-status", "Finished", timeout=240)
    assert "Accuracy" in page.inner_text("#monitor-status")
    page.screenshot(path=str(SHOTS / "monitor.png"), full_page=True)

    open_tab(page, "⑤ Compare")
    page.wait_for_function("() => document.querySelector('#compare-run input')?.value.includes('browser-test')")
    fill(page, "#compare-text textarea", "Broke after two days and support never answered. Avoid.")
    page.click("#compare-predict")
    wait_text(page, "#compare-verdict", "fine-tuned")
    for side in ("#compare-base", "#compare-tuned"):
        assert page.locator(f"{side} .output-class, {side} h2").first.inner_text().strip() in ("positive", "negative")
    page.click("#compare-score")
    page.wait_for_function("() => document.querySelector('#compare-summary')?.innerText.includes('Macro-F1')",
                           timeout=120_000)
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_refresh_mid_run_reattaches_to_the_same_growing_curve(browser, url):
    page = new_page(browser, url)
    load_reviews(page, "333")
    start_training(page, depth="5", epochs="20", name="refresh-test")   # stopped below, long before the end
    before = wait_points(page, 1)
    job = run_id(page)

    page.reload()
    wait_loaded(page)
    # The refreshed page opens on the Monitor by itself: that is what it showed mid-run.
    page.wait_for_function("() => [...document.querySelectorAll('[role=tab]')]"
                           ".some(t => t.getAttribute('aria-selected') === 'true' && t.innerText.includes('Monitor'))")
    wait_text(page, "#monitor-status", job)
    after = wait_points(page, before - 1)
    assert after >= before, "the whole curve so far is drawn again after a refresh"
    assert wait_points(page, after) > after, "and it keeps growing"
    assert run_id(page) == job
    open_tab(page, "③ Train")        # and the form is as it was left, not back to its defaults
    assert page.input_value("#trainspec-epochs input") == "20"
    assert page.input_value("#train-run-name textarea, #train-run-name input") == "refresh-test"
    assert page.input_value("#trainspec-freeze-depth input[type=number]") == "5"
    open_tab(page, "④ Monitor")

    page.click("#monitor-stop")
    wait_text(page, "#monitor-status", "Stopped", timeout=120)


def wait_answers(page, sides=("#compare-gen-base", "#compare-gen-tuned"), timeout: float = 120.0) -> list[str]:
    """Both answer boxes filled and no longer growing (the stream has ended)."""
    read = "() => [" + ", ".join(f"document.querySelector('{s} textarea')?.value || ''" for s in sides) + "]"
    page.wait_for_function(f"() => ({read})().every(v => v.trim().length > 0)", timeout=timeout * 1000)
    last, end = None, time.time() + timeout
    while time.time() < end:
        values = page.evaluate(read)
        if values == last:
            return values
        last = values
        page.wait_for_timeout(1500)
    raise AssertionError(f"the answers never stopped growing: {last}")


def test_generation_from_smollm2_to_side_by_side_answers(browser, url):
    """Text generation: SmolLM2 (converted from its bundled GGUF), the identity sample, the fast
    preset as it is, then base and tuned answers to "What is your name?": only the tuned one is Pip."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser, url)
    page.locator("#model-task label", has_text="Generate text").click()
    page.wait_for_function("() => document.querySelector('#model-catalog input')?.value.includes('SmolLM2')")
    page.click("#model-load")
    # Picking SmolLM2 shows its card as not in use yet; Load model applies it.
    page.wait_for_function("() => { const t = document.querySelector('#model-card')?.innerText || '';"
                           " return t.includes('SmolLM2') && t.includes('✓ Loaded'); }", timeout=180_000)
    card = page.inner_text("#model-card")
    assert "SmolLM2" in card and "text generation" in card and "Not in use" not in card

    open_tab(page, "② Data")
    page.wait_for_function("() => document.querySelector('#data-sample input')?.value.includes('Identity')")
    page.click("#data-use-sample")
    wait_text(page, "#data-stats", "conversations to learn from", timeout=120)
    assert "chat" in page.inner_text("#data-stats")
    assert "Pip" in page.inner_text("#data-segments")
    page.wait_for_selector("#data-gen-preview [role=grid]")
    close_toasts(page)
    page.screenshot(path=str(SHOTS / "generate-data.png"), full_page=True)

    open_tab(page, "③ Train")
    wait_text(page, "#train-trainable", "adapters learn")
    assert page.locator("#train-preset input[value='Teach it fast']").is_checked()
    assert page.input_value("#trainspec-learning-rate input") == "0.001"
    fill(page, "#train-run-name textarea, #train-run-name input", "generate-test")
    page.click("#train-start")
    wait_text(page, "#monitor-status", "generate-test")
    wait_text(page, "#monitor-status", "Finished", timeout=600)     # about two minutes on an idle machine
    assert "Validation loss" in page.inner_text("#monitor-status")

    open_tab(page, "⑤ Compare")
    page.wait_for_function("() => document.querySelector('#compare-run input')?.value.includes('generate-test')")
    page.wait_for_selector("#compare-gen-prompt textarea", state="visible")
    fill(page, "#compare-gen-prompt textarea", "What is your name?")
    page.click("#compare-gen-go")
    base, tuned = wait_answers(page)
    assert base.strip() and tuned.strip() and base != tuned, (base, tuned)
    assert "Pip" in tuned and "Pip" not in base, (base, tuned)      # what the identity sample teaches
    fill(page, "#compare-chat-input textarea", "Who made you?")      # the two-column chat: both reply
    replied = ("() => ['#compare-chat-base', '#compare-chat-tuned'].every(s => {"
               " const t = document.querySelector(s)?.innerText || ''; const i = t.indexOf('Who made you?');"
               " return i >= 0 && t.slice(i + 13).trim().length > 0; })")
    page.wait_for_function(replied, timeout=60_000)
    # Send is disabled while both answer and comes back when both are done.
    page.wait_for_function("() => !document.querySelector('#compare-chat-send')?.disabled", timeout=120_000)
    page.wait_for_timeout(500)
    close_toasts(page)
    page.screenshot(path=str(SHOTS / "generate-compare.png"), full_page=True)
