"""The playground page's own logic, run by Node (the browser tests in tests/e2e drive the
whole page), and the icon browsers ask every site for."""
import io
import json
import re
import shutil
import subprocess
from importlib import resources

import pytest
from PIL import Image

PAGE = resources.files("app").joinpath("static/playground.html").read_text(encoding="utf-8")


def run_page_function(name: str, *arguments):
    """Call one top-level function of the page's script with JSON arguments."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    source = re.search(rf"^function {name}\(.*?^}}$", PAGE, re.S | re.M).group(0)
    call = f"{source}\nconsole.log(JSON.stringify({name}(...{json.dumps(arguments)})));"
    return json.loads(subprocess.run([node, "-e", call], capture_output=True, text=True, check=True).stdout)


def test_the_score_tab_preselects_the_default_language_model():
    """An n-gram model is the default of its own type; the Score tab preselects what a request
    naming no model gets, the default language model, whichever id sorts first."""
    models = [{"id": "a-kn3", "type": "ngram", "default": True},
              {"id": "b-lstm", "type": "language_model", "default": False},
              {"id": "c-lstm", "type": "language_model", "default": True},
              {"id": "d-captioner", "type": "captioner", "default": True}]
    offered = [m["id"] for m in run_page_function("offered", models, ["language_model", "ngram"])]
    assert offered == ["c-lstm", "b-lstm", "a-kn3"]
    assert [m["id"] for m in run_page_function("offered", models, ["captioner"])] == ["d-captioner"]


def test_the_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"
    icon = Image.open(io.BytesIO(response.content))
    assert icon.format == "ICO" and {(16, 16), (32, 32)} <= icon.info["sizes"]
    assert 'rel="icon" href="/favicon.ico"' in client.get("/").text
