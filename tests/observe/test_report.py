import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time

import pytest
import torch
from PIL import Image

import trainwell
from trainwell.data import TensorLoader
from trainwell.observe.doctor import Finding
from trainwell.observe.report import write_report

from ..conftest import small_classifier

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    targets = torch.randint(0, 3, (300,), generator=generator)
    inputs = centers[targets] + 0.5 * torch.randn(300, 2, generator=generator)
    path = tmp_path_factory.mktemp("report") / "run"
    loaders = (
        TensorLoader(inputs[:240], targets[:240], batch_size=32, seed=0),
        TensorLoader(inputs[240:], targets[240:], shuffle=False),
    )
    trainwell.fit(small_classifier(), *loaders, epochs=4, lr=1e-2, run_dir=path, **QUIET)
    return path


def test_the_run_directory_holds_the_report_curves_and_confusion_matrix(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"metrics.jsonl", "config.yaml", "model.txt", "curves.png", "confusion.json", "report.html"} <= names
    confusion = json.loads((run_dir / "confusion.json").read_text())
    assert sum(map(sum, confusion["matrix"])) == 60 and len(confusion["matrix"]) == 3


def test_the_report_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    for section in ("Diagnosis", "Metrics", "Learning curves", "Confusion matrix", "System", "Configuration", "Model"):
        assert f"<h2>{section}</h2>" in page
    assert "<script" not in page and "<link" not in page and not re.search(r"(src|href)=\"(?!data:)", page)
    image = re.search(r'id="curves" [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert Image.open(io.BytesIO(base64.b64decode(image.group(1)))).format == "PNG"
    assert "torch" in page and "val_accuracy" in page and "Parameters: 99 (trainable 99)" in page


def test_text_from_the_run_is_escaped(tmp_path, run_dir):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "model.txt").write_text("<script>alert(1)</script>")
    finding = Finding("x", "warning", "a <b> title", "evidence & more", "fix")
    page = write_report(copy, findings=[finding]).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "a &lt;b&gt; title" in page


def test_chosen_validation_metrics_are_in_the_summary_after_the_usual_ones(tmp_path, run_dir):
    copy = tmp_path / "chosen"
    shutil.copytree(run_dir, copy)
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        if record["event"] == "epoch":
            record.update(val_top5=0.5, val_perplexity=1.25)
    (copy / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    page = write_report(copy).read_text()
    rows = re.findall(r"<tr><td>([a-z_0-9]+)</td>", page)
    assert rows.index("val_recall") < rows.index("val_perplexity") < rows.index("val_top5") < rows.index("lr")


def _chromium():
    return next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )


class DevTools:
    """Chromium driven over the DevTools protocol through --remote-debugging-pipe (NUL-ended JSON)."""

    def __init__(self, binary, profile):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def use_pipe_fds():
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]  # fmt: skip
        self.process = subprocess.Popen(
            [binary, *flags],
            pass_fds=(3, 4),
            preexec_fn=use_pipe_fds,  # noqa: PLW1509 - the test starts no threads
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []

    def send(self, method, params=None, session=None, timeout=30):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        return self.wait(lambda m: m.get("id") == self._next_id, timeout)

    def wait(self, matches, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if matches(message):
                    if "error" in message:
                        raise RuntimeError(message["error"])
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.mark.slow
def test_the_report_loads_in_headless_chromium_without_errors_and_shows_the_curves(run_dir, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip(
            "chromium is not installed, so report.html cannot be loaded in a real browser: apt-get install chromium"
        )
    browser = DevTools(binary, tmp_path / "profile")
    try:
        page = next(t for t in browser.send("Target.getTargets")["result"]["targetInfos"] if t["type"] == "page")
        session = browser.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["result"][
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": (run_dir / "report.html").as_uri()}, session=session)
        browser.wait(lambda m: m.get("method") == "Page.loadEventFired")
        check = "JSON.stringify((() => { const img = document.getElementById('curves'); const box = img.getBoundingClientRect();" \
                " return {loaded: img.complete, width: img.naturalWidth, height: img.naturalHeight, shownWidth: box.width," \
                " shownHeight: box.height, display: getComputedStyle(img).display, visibility: getComputedStyle(img).visibility," \
                " title: document.title}; })())"  # fmt: skip
        result = browser.send("Runtime.evaluate", {"expression": check, "returnByValue": True}, session=session)
        curves = json.loads(result["result"]["result"]["value"])
    finally:
        browser.close()
    assert curves["loaded"] and (curves["width"], curves["height"]) == (1500, 420)
    assert curves["shownWidth"] > 600 and curves["shownHeight"] > 150
    assert (
        curves["display"] != "none" and curves["visibility"] == "visible" and curves["title"] == "trainwell report: run"
    )
    errors = [
        e for e in browser.events
        if e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e["method"] == "Network.requestWillBeSent"]
    assert requests and all(url.startswith(("file:", "data:")) for url in requests)


def test_a_run_shorter_than_the_shortest_shown_time_keeps_its_status_line_intact():
    from trainwell.observe.records import RunRecords
    from trainwell.observe.report import _status

    run = RunRecords.from_records(
        [
            {"event": "epoch", "epoch": 1, "epoch_time_s": 0.001, "train_loss": 1.0},
            {"event": "exception", "type": "DivergenceError", "message": "Training diverged."},
        ],
        config={"epochs": 5},
    )
    # "< 0.01 s" must reach the page escaped, or the browser takes it for a tag and hides the message.
    assert _status(run) == (
        '<p class="status failed">Failed with DivergenceError after 1 epoch of 5 in &lt; 0.01 s: Training diverged.</p>'
    )
