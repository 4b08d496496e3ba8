"""The playground in a real browser (Debian's headless Chromium driven by Playwright) against a
real uvicorn: type, click, upload an image, read the results.

`RNNSERVE_UPDATE_SCREENSHOTS=1` makes the screenshot test write the README's pictures of each
tab (taken with the shipped models) into docs/screenshots/."""
import os
import random
import shutil
from pathlib import Path

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


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def only_loopback(route) -> None:
    """The network is off: only the server under test answers."""
    if route.request.url.startswith(("http://127.0.0.1", "blob:", "data:")):
        route.continue_()
    else:
        route.abort()


@pytest.fixture()
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed (make test installs it as root: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        context.route("**/*", only_loopback)
        page = context.new_page()
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
    shown = page.inner_text("#generate-output")
    completion = page.inner_text("#generate-output .completion")
    assert completion.strip() and shown == "the cat sat on" + completion  # prompt + completion, joined
    assert page.inner_text("#generate-error") == ""


def test_generate_defaults_suit_the_model_and_match_the_readme(page, playground_server):
    page.goto(playground_server.base_url + "/")
    page.wait_for_function("document.getElementById('gen-model').options.length > 0")
    assert page.input_value("#prompt") == "The"  # the tiny model names no example prompt
    assert page.input_value("#top_k") == "40"
    assert page.input_value("#max_tokens") == "40"  # a word model
    for field in ("#min_tokens", "#stop", "#gen-n"):
        assert page.is_visible(field)


def test_n_choices_stop_strings_and_the_stop_button(page, playground_server):
    page.goto(playground_server.base_url + "/")
    page.wait_for_function("document.getElementById('gen-model').options.length > 0")
    page.fill("#prompt", "the cat")
    page.fill("#gen-n", "2")
    page.fill("#seed", "3")
    page.fill("#max_tokens", "30")
    page.click("#generate-run")
    page.wait_for_function("document.getElementById('generate-meta').textContent.includes('finish:')", timeout=20000)
    assert page.locator("#generate-outputs .output").count() == 2
    # A long generation, stopped from the page.
    page.fill("#gen-n", "1")
    page.fill("#seed", "")
    page.fill("#min_tokens", "1000")
    page.fill("#max_tokens", "1000")
    page.click("#generate-run")
    page.wait_for_function("document.querySelector('#generate-output .completion').textContent.length > 0", timeout=20000)
    page.click("#generate-stop")
    page.wait_for_function("document.getElementById('generate-meta').textContent === 'stopped'", timeout=10000)
    assert page.is_enabled("#generate-run")


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
    assert page.is_visible("#legend")


def test_unknown_words_are_marked_and_ranking_switches(page, playground_server):
    page.goto(playground_server.base_url + "/")
    page.click("nav button[data-tab=score]")
    page.fill("#sentences", "the cat sat on the mat .\nthe cat sat on the zyxwv blorp mat .")
    page.click("#score-run")
    page.wait_for_selector("#score-table tbody tr:nth-child(2)", timeout=20000)
    marked = page.locator("#score-table .tok.oov")
    assert marked.count() == 2 and sorted(marked.all_inner_texts()) == ["blorp", "zyxwv"]
    assert marked.first.evaluate("element => getComputedStyle(element).outlineStyle") == "dashed"
    cells = lambda: page.locator("#score-table tbody tr:first-child td").all_inner_texts()  # noqa: E731
    by_total = cells()
    page.select_option("#rank-by", "per_token")
    by_token = cells()
    assert float(by_token[3]) >= float(page.locator("#score-table tbody tr:nth-child(2) td").all_inner_texts()[3])
    assert by_total[1] and by_token[1]


def test_caption_an_uploaded_image(page, playground_server, tmp_path):
    image_path = tmp_path / "red-circle.png"
    draw("circle", "red", random.Random(9), 48).save(image_path)
    page.goto(playground_server.base_url + "/")
    page.click("nav button[data-tab=caption]")
    page.wait_for_function("document.getElementById('caption-model').options.length > 0")
    requests = []
    page.on("request", lambda request: requests.append(request) if request.url.endswith("/v1/caption") else None)
    page.set_input_files("#file", str(image_path))
    page.wait_for_selector("#captions li", timeout=20000)
    captions = page.locator("#captions li").all_inner_texts()
    assert 1 <= len(captions) <= 3 and all("score" in c and "log p" in c for c in captions)
    order = [("cut off" in c, -float(c.split("score ")[1].split(" ")[0])) for c in captions]
    assert order == sorted(order)  # listed in the order they are ranked by: finished, then by score
    assert page.is_visible("#preview")
    # A changed parameter captions the same image again; so does choosing the same file again.
    page.fill("#beam_size", "2")
    page.dispatch_event("#beam_size", "change")
    page.wait_for_function(f"{len(requests)} < 2 || document.querySelectorAll('#captions li').length > 0", timeout=20000)
    page.wait_for_timeout(200)
    page.set_input_files("#file", str(image_path))
    page.wait_for_selector("#captions li", timeout=20000)
    assert len(requests) == 3


def test_bad_upload_shows_the_error(page, playground_server, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    page.goto(playground_server.base_url + "/")
    page.click("nav button[data-tab=caption]")
    page.set_input_files("#file", str(fake))
    page.wait_for_function("document.getElementById('caption-error').textContent.includes('415')", timeout=20000)


def test_openapi_docs_render_without_internet(page, playground_server):
    page.goto(playground_server.base_url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20000)
    assert "rnnserve" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".opblock").count() >= 5  # the endpoints are listed


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("shipped"), tmp_path_factory.mktemp("none"), RNNSERVE_SERVE_SHIPPED_MODELS="true")
    yield server
    server.stop()


def test_each_tab_with_the_shipped_models(page, shipped_server, tmp_path):
    """The README's screenshots: each tab used the way a newcomer would, with the shipped models."""
    directory = SCREENSHOTS if os.environ.get("RNNSERVE_UPDATE_SCREENSHOTS") else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    page.goto(shipped_server.base_url + "/")
    page.wait_for_function("document.getElementById('gen-model').options.length > 0")
    assert page.input_value("#gen-model") == "wikitext2-lstm" and page.input_value("#prompt") == "The game was released in"
    page.fill("#seed", "1")
    page.click("#generate-run")
    page.wait_for_function("document.getElementById('generate-meta').textContent.includes('finish:')", timeout=30000)
    assert page.inner_text("#generate-output .completion").startswith(" ")  # joined to the prompt by a space
    page.screenshot(path=str(directory / "playground-generate.png"))
    page.select_option("#gen-model", "shakespeare-char-lstm")
    assert page.input_value("#prompt") == "ROMEO:"

    page.click("nav button[data-tab=score]")
    page.fill("#sentences", "Yesterday John Smith visited London .\nYesterday qwzxv plorkt visited blargh .\nThe cat sat on the mat .\nThe cat sat the on mat .")
    page.click("#score-run")
    page.wait_for_selector("#score-table tbody tr:nth-child(4)", timeout=30000)
    page.screenshot(path=str(directory / "playground-score.png"))

    page.click("nav button[data-tab=caption]")
    import matplotlib.cbook

    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # a real photograph matplotlib ships
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#captions li", timeout=30000)
    page.screenshot(path=str(directory / "playground-caption.png"))
