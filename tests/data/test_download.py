"""Downloads against a local HTTP server on 127.0.0.1 that each test scripts; no other address is contacted."""

import hashlib
import http.server
import threading

import pytest

from trainwell import DataError
from trainwell.data.download import DownloadError, RemoteFile, check_url, fetch
from trainwell.data.idx import IdxSource, load_idx
from trainwell.files.retry import RetryPolicy

PAYLOAD = bytes(range(256)) * 64
GOOD = RemoteFile("data.bin", md5=hashlib.md5(PAYLOAD).hexdigest())
GOOD_SHA = RemoteFile("data.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())


class ScriptedServer:
    """Serves, for each path, the next scripted response: ('ok', body), ('status', code), ('html',),
    ('close',) to drop the connection without a response, or ('short', body) to send half a body."""

    def __init__(self):
        self.script: dict[str, list[tuple]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                queue = server.script.get(self.path, [])
                action = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else ("status", 404))
                kind = action[0]
                if kind == "close":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if kind == "status":
                    self.send_error(action[1])
                    return
                body, content_type = (b"<!DOCTYPE html><html>Not found</html>", "text/html; charset=utf-8") if kind == "html" else (action[1], "application/octet-stream")
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if kind == "short" else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def base(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{prefix}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


@pytest.fixture
def waits():
    return []


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fails_twice_then_succeeds_with_backoff(server, tmp_path, waits):
    server.script["/a/data.bin"] = [("status", 503), ("close",), ("ok", PAYLOAD)]
    path = fetch(GOOD, tmp_path, [server.base("a")], sleep=waits.append, timeout_s=5)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/a/data.bin"] * 3
    # The policy: 1 s, then 2 s, each stretched by up to 10 % jitter. A fake clock, no real sleep.
    assert len(waits) == 2 and 1.0 <= waits[0] <= 1.1 and 2.0 <= waits[1] <= 2.2
    assert leftovers(tmp_path) == ["data.bin"]


def test_sha256_checksums_work_too(server, tmp_path, waits):
    server.script["/a/data.bin"] = [("ok", PAYLOAD)]
    assert fetch(GOOD_SHA, tmp_path, [server.base("a")], sleep=waits.append).read_bytes() == PAYLOAD


def test_corrupted_file_is_rejected_and_the_next_mirror_tried(server, tmp_path, waits):
    corrupted = PAYLOAD[:-1] + b"\x00"
    server.script["/bad/data.bin"] = [("ok", corrupted)]
    server.script["/good/data.bin"] = [("ok", PAYLOAD)]
    path = fetch(GOOD, tmp_path, [server.base("bad"), server.base("good")], sleep=waits.append)
    assert path.read_bytes() == PAYLOAD
    # A checksum mismatch is not retried on the same mirror: it is what that mirror serves.
    assert server.requests == ["/bad/data.bin", "/good/data.bin"] and waits == []
    assert leftovers(tmp_path) == ["data.bin"]


def test_corrupted_everywhere_leaves_nothing_behind(server, tmp_path, waits):
    server.script["/bad/data.bin"] = [("ok", PAYLOAD[::-1])]
    with pytest.raises(DownloadError, match=r"every mirror failed \(.*/bad/data.bin: checksum mismatch: got [0-9a-f]{32}, the published one is"):
        fetch(GOOD, tmp_path / "cache", [server.base("bad")], sleep=waits.append)
    assert leftovers(tmp_path / "cache") == []


def test_html_error_page_with_status_200_is_rejected(server, tmp_path, waits):
    server.script["/html/data.bin"] = [("html",)]
    with pytest.raises(DownloadError, match=r"served an HTML page \(Content-Type 'text/html"):
        fetch(GOOD, tmp_path, [server.base("html")], sleep=waits.append)
    assert leftovers(tmp_path) == [] and waits == []


def test_serves_nothing_gives_a_clear_error_after_the_retries(server, tmp_path, waits):
    server.script["/dead/data.bin"] = [("close",)]
    with pytest.raises(DownloadError) as raised:
        fetch(GOOD, tmp_path, [server.base("dead")], sleep=waits.append, timeout_s=5)
    message = str(raised.value)
    assert "could not download 'data.bin'" in message and "every mirror failed" in message
    assert "put the file in" in message
    assert server.requests == ["/dead/data.bin"] * 3 and len(waits) == 2
    assert leftovers(tmp_path) == []
    assert isinstance(raised.value, DataError)


def test_a_body_cut_short_is_retried_and_never_kept(server, tmp_path, waits):
    server.script["/short/data.bin"] = [("short", PAYLOAD), ("ok", PAYLOAD)]
    assert fetch(GOOD, tmp_path, [server.base("short")], sleep=waits.append).read_bytes() == PAYLOAD
    assert len(server.requests) == 2 and len(waits) == 1


def test_not_found_moves_on_without_retrying(server, tmp_path, waits):
    server.script["/b/data.bin"] = [("ok", PAYLOAD)]
    fetch(GOOD, tmp_path, [server.base("a"), server.base("b")], sleep=waits.append)
    assert server.requests == ["/a/data.bin", "/b/data.bin"] and waits == []


def test_a_cache_hit_makes_no_request(server, tmp_path, waits):
    (tmp_path / "data.bin").write_bytes(PAYLOAD)
    assert fetch(GOOD, tmp_path, [server.base("a")], sleep=waits.append).read_bytes() == PAYLOAD
    assert server.requests == []


def test_only_https_except_loopback():
    check_url("https://example.org/f.gz")
    check_url("http://127.0.0.1:8000/f.gz")
    check_url("http://[::1]:8000/f.gz")
    for url in ("http://example.org/f.gz", "ftp://127.0.0.1/f.gz", "file:///tmp/f.gz", "http://10.0.0.1/f.gz"):
        with pytest.raises(DataError, match="is not https"):
            check_url(url)


def test_a_plain_http_mirror_is_refused_before_any_request(server, tmp_path, waits):
    with pytest.raises(DataError, match="is not https"):
        fetch(GOOD, tmp_path, [server.base("a"), "http://example.org/"], sleep=waits.append)
    assert server.requests == []


def test_remote_file_needs_a_checksum():
    with pytest.raises(ValueError, match="has no checksum"):
        RemoteFile("x.gz")


def test_mnist_downloaded_into_the_data_dir_then_read_from_the_cache(server, make_mnist_dir, tmp_path, waits):
    published = make_mnist_dir("published", train=100, test=20)
    files = []
    for path in sorted(published.iterdir()):
        server.script[f"/m/{path.name}"] = [("ok", path.read_bytes())]
        files.append(RemoteFile(path.name, md5=hashlib.md5(path.read_bytes()).hexdigest()))
    source = IdxSource(files=tuple(files), mirrors=(server.base("m"),), class_names=tuple("0123456789"))
    cache = tmp_path / "cache"
    splits = load_idx("mnist", cache, source=source, sleep=waits.append)
    assert splits.test[0].shape == (20, 1, 28, 28) and len(server.requests) == 4
    assert leftovers(cache) == sorted(f.name for f in files)
    # Downloaded files read like any other (the partial file was created 0600 by mkstemp).
    (tmp_path / "plain").write_text("x")
    assert {(cache / f.name).stat().st_mode & 0o777 for f in files} == {(tmp_path / "plain").stat().st_mode & 0o777}
    load_idx("mnist", cache, source=source, sleep=waits.append)
    assert len(server.requests) == 4  # the second load made no request at all


def test_the_published_mirrors_are_https():
    from trainwell.data.idx import IDX_DATASETS

    for source in IDX_DATASETS.values():
        assert len(source.files) == 4 and all(f.md5 and len(f.md5) == 32 for f in source.files)
        for mirror in source.mirrors:
            check_url(mirror)


def test_retry_policy_can_be_shortened(server, tmp_path, waits):
    server.script["/dead/data.bin"] = [("close",)]
    with pytest.raises(DownloadError):
        fetch(GOOD, tmp_path, [server.base("dead")], policy=RetryPolicy(attempts=1), sleep=waits.append)
    assert len(server.requests) == 1 and waits == []
