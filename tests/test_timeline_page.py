"""The live timeline page in a real browser (headless Chromium from Debian's packages, driven by Selenium)
against a real core replaying the demo: alice's spans where the ground truth has them, a click plays the
clip, a reject on the page changes the bank. The pictures in docs/ are taken here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from daemon_harness import Daemon, demo_truth
from voicewatch.bank import SpeakerBank
from voicewatch.plugins.replay import replay
from voicewatch.shipped import DEMO_BANK, DEMO_RECORDING

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SECOND_CHANNEL_DELAY_S = 20.0
"""ch2 carries the same recording, begun this much later: two rows on the page."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("desk")
    bank = tmp / "bank.safetensors"
    shutil.copy(DEMO_BANK, bank)
    port = free_port()
    core = Daemon(tmp, config={"bank": {"path": str(bank)}, "clips": {"path": str(tmp / "clips")},
                               "processing": {"max_lag_s": None}, "web": {"port": port}},
                  log_path=tmp / "events.sqlite")
    web = subprocess.Popen([sys.executable, "-m", "voicewatch", "web", "-c", str(core.config)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert web.stdout is not None and "timeline page" in web.stdout.readline()
        # the recording as if heard live over the last minutes: ch1 first, ch2 half a minute later
        length = soundfile.info(str(DEMO_RECORDING)).duration
        origin = time.time() - length - SECOND_CHANNEL_DELAY_S - 5
        replay([str(DEMO_RECORDING)], core.ingest, ["ch1"], speed=None, wall=origin)
        replay([str(DEMO_RECORDING)], core.ingest, ["ch2"], speed=None, wall=origin + SECOND_CHANNEL_DELAY_S)
        core.wait_for_eos("ch1", "ch2")
        yield {"core": core, "bank": bank, "origin": origin, "url": f"http://127.0.0.1:{port}/"}
    finally:
        web.terminate()
        web.wait(timeout=30)
        assert core.stop() == 0
        assert "Traceback" not in core.stderr


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    assert CHROMIUM and CHROMEDRIVER, "the page tests need Debian's chromium and chromium-driver (README: test command)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1280,560"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, condition, timeout: float = 20):  # noqa: ANN001, ANN201 - selenium's own types
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def open_last_minutes(driver: WebDriver, url: str) -> None:
    """Open the page (the last hour) and zoom in with its own button to the last four minutes or so."""
    driver.get(url)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".span[data-speaker=alice]"))
    for _ in range(4):  # 3600 s → 225 s
        driver.find_element(By.ID, "zoom-in").click()
    wait(driver, lambda d: float(d.find_element(By.ID, "rows").get_attribute("data-t1"))
         - float(d.find_element(By.ID, "rows").get_attribute("data-t0")) < 240)


def drawn_spans(driver: WebDriver, stream: str) -> list[tuple[float, float]]:
    """Where alice's spans are drawn on `stream`'s row, read back from their pixels as UTC times."""
    rows = driver.find_element(By.ID, "rows")
    t0, t1 = float(rows.get_attribute("data-t0")), float(rows.get_attribute("data-t1"))
    track = driver.find_element(By.CSS_SELECTOR, f".row[data-stream={stream}] .track")
    left, width = track.rect["x"], track.rect["width"]
    spans = track.find_elements(By.CSS_SELECTOR, ".span[data-speaker=alice]")
    return sorted((t0 + (s.rect["x"] - left) / width * (t1 - t0), t0 + (s.rect["x"] + s.rect["width"] - left) / width * (t1 - t0))
                  for s in spans)


def test_the_page_shows_alices_spans_where_the_ground_truth_has_them(desk: dict, browser: WebDriver) -> None:
    open_last_minutes(browser, desk["url"])
    truth = [(t["start"], t["end"]) for t in demo_truth() if t["speaker"] == "alice"]
    for stream, origin in (("ch1", desk["origin"]), ("ch2", desk["origin"] + SECOND_CHANNEL_DELAY_S)):
        drawn = drawn_spans(browser, stream)
        assert len(drawn) == len(truth), (stream, drawn)
        for (start, end), (first, last) in zip(truth, drawn, strict=True):
            assert abs(first - (origin + start)) < 1.0 and abs(last - (origin + end)) < 1.0, (stream, start, end)
    assert browser.find_element(By.CSS_SELECTOR, ".row[data-stream=ch1] .health").text == "ended"  # its eos


def test_clicking_a_span_plays_its_clip(desk: dict, browser: WebDriver) -> None:
    open_last_minutes(browser, desk["url"])
    browser.find_elements(By.CSS_SELECTOR, ".row[data-stream=ch1] .span[data-speaker=alice]")[0].click()
    wait(browser, lambda d: d.find_element(By.ID, "player").get_attribute("data-state") == "playing")
    heard = browser.execute_script(
        "const p = document.getElementById('player');"
        "const load = performance.getEntriesByType('resource').find(e => e.name.includes('/api/clips/'));"
        "return [p.duration, p.error, load.responseStatus, load.transferSize];")
    duration, error, status, size = heard
    assert error is None and status == 200 and size > 10_000
    assert 14.0 < duration < 18.0  # alice's first turn (14 s), a second either side
    time.sleep(1.0)  # the picture shows the player a second in
    browser.save_screenshot(str(DOCS / "timeline.png"))


def test_a_reject_on_the_page_changes_the_bank(desk: dict, browser: WebDriver) -> None:
    before = desk["bank"].read_bytes()
    open_last_minutes(browser, desk["url"])
    browser.find_elements(By.CSS_SELECTOR, ".row[data-stream=ch2] .span[data-speaker=alice]")[-1].click()
    browser.find_element(By.ID, "reviewer").send_keys("desk1")
    browser.find_element(By.ID, "d-note").send_keys("a test of the page")
    browser.find_element(By.ID, "reject").click()
    wait(browser, lambda d: "rejected by desk1" in d.find_element(By.ID, "d-verdict").text)
    assert desk["bank"].read_bytes() != before
    bank = SpeakerBank.load(desk["bank"])
    assert len(bank.cohort("alice")[0]) >= 8 and bank.threshold("alice") > SpeakerBank.load(DEMO_BANK).threshold("alice")
    assert "reject" in browser.find_element(By.CSS_SELECTOR, ".row[data-stream=ch2] .span.reject").get_attribute("class")

    browser.find_element(By.ID, "tab-speakers").click()
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#speakers tr[data-speaker=alice]"))
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1:4] == ["alice", "38", str(len(bank.cohort("alice")[0]))] and cells[5] == "6"
    browser.save_screenshot(str(DOCS / "speakers.png"))
