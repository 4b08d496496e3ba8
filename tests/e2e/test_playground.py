"""The playground in a real browser (Debian's headless Chromium driven by Playwright) against a
real uvicorn: type, click, upload an image, read the results."""
import random
import shutil

import pytest

from tests.e2e.conftest import start_server
from tests.training.shapes import draw

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def playground_server(tmp_path_factory, all_models_dir):
    server = start_server(tmp_path_factory.mktemp("playground"), all_models_dir)
    yield server
    server.stop()


@pytest.fixture()
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        yield page
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        browser.close()


def test_generate_streams_into_the_page(page, playground_server):
    page.goto(playground_server.base_url + "/")
    page.wait_for_function("document.getElementById('models').textContent.includes('tiny-word-lstm')")
    page.fill("#prompt", "the cat sat on")
    page.select_option("#strategy", "argmax")
    page.fill("#max_tokens", "12")
    page.click("#generate-run")
    page.wait_for_function("document.getElementById('generate-meta').textContent.includes('finish:')", timeout=20000)
    assert page.inner_text("#generate-output").strip()
    assert page.inner_text("#generate-error") == ""


def test_score_ranks_and_shades_tokens(page, playground_server):
    page.goto(playground_server.base_url + "/")
    page.click("nav button[data-tab=score]")
    page.fill("#sentences", ". mat the on sat cat the\nthe cat sat on the mat .")
    page.click("#score-run")
    page.wait_for_selector("#score-table tbody tr:nth-child(2)", timeout=20000)
    first = page.inner_text("#score-table tbody tr:first-child")
    assert "the cat sat on the mat ." in first
    assert page.locator("#score-table tbody tr:first-child .tok").count() == 8  # seven words and <eos>
    shade = page.locator("#score-table .tok").first.evaluate("element => getComputedStyle(element).backgroundColor")
    assert shade.startswith("rgb")


def test_caption_an_uploaded_image(page, playground_server, tmp_path):
    image_path = tmp_path / "red-circle.png"
    draw("circle", "red", random.Random(9), 48).save(image_path)
    page.goto(playground_server.base_url + "/")
    page.click("nav button[data-tab=caption]")
    page.wait_for_function("document.getElementById('caption-model').options.length > 0")
    page.set_input_files("#file", str(image_path))
    page.wait_for_selector("#captions li", timeout=20000)
    captions = page.locator("#captions li").all_inner_texts()
    assert 1 <= len(captions) <= 3 and all("log p" in c for c in captions)
    assert page.is_visible("#preview")


def test_bad_upload_shows_the_error(page, playground_server, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    page.goto(playground_server.base_url + "/")
    page.click("nav button[data-tab=caption]")
    page.set_input_files("#file", str(fake))
    page.wait_for_function("document.getElementById('caption-error').textContent.includes('415')", timeout=20000)
