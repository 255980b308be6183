"""Downloads that never leave a partial file looking complete.

A file is fetched from a list of mirrors, each through the project's retry policy
(:func:`trainwell.files.retry.retry_call`: 3 attempts, 1 s then 2 s, with jitter). Bytes go to a
``.part`` file in the target directory while their checksum is computed; only when the
checksum matches the published one is the file renamed to its final name. So a file under its
final name is always complete, and a cache hit needs no network at all.

Only https is accepted, except for loopback addresses (a test's local server).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trainwell.display import progress
from trainwell.exceptions import DataError
from trainwell.files.atomic import ordinary_mode
from trainwell.files.retry import DEFAULT_POLICY, RetryPolicy, retry_call

logger = logging.getLogger("trainwell")

CHUNK_BYTES = 1 << 20
# HTTP statuses worth retrying: the server or something in between is busy or briefly failing.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(DataError):
    """No mirror delivered a file whose checksum matches the published one."""


@dataclass(frozen=True)
class RemoteFile:
    """A file published with its checksum.

    Args:
        name: File name, appended to each mirror's base URL and used in the target directory.
        md5: Published MD5 (hex), if that is what the publisher gives.
        sha256: Published SHA-256 (hex); at least one of the two is required.
    """

    name: str
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not (self.md5 or self.sha256):
            raise ValueError(f"RemoteFile({self.name!r}) has no checksum: give md5 or sha256, so a download can be verified.")

    def hasher(self) -> tuple[Any, str]:
        """A fresh hash object and the digest it must produce."""
        if self.sha256:
            return hashlib.sha256(), self.sha256.lower()
        return hashlib.md5(usedforsecurity=False), self.md5.lower()


class _Transient(OSError):
    """A failure worth retrying on the same mirror (a 5xx, a reset connection)."""


class _Rejected(Exception):
    """What the mirror served is wrong (checksum, HTML page, 404): move on to the next mirror."""


def check_url(url: str) -> None:
    """Refuse anything but https, except plain http to a loopback address.

    Raises:
        DataError: naming the URL and what is allowed.

    Example:
        >>> check_url("http://127.0.0.1:8000/x.gz")
        >>> check_url("http://example.org/x.gz")
        Traceback (most recent call last):
        ...
        trainwell.exceptions.DataError: mirror URL 'http://example.org/x.gz' is not https: downloads need https (plain http is allowed only for a loopback address such as 127.0.0.1).
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise DataError(
        f"mirror URL {url!r} is not https: downloads need https (plain http is allowed only for a "
        "loopback address such as 127.0.0.1)."
    )


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch(
    remote: RemoteFile,
    directory: str | Path,
    mirrors: Sequence[str],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Any] = time.sleep,
    timeout_s: float = 30.0,
) -> Path:
    """``directory/remote.name``, downloaded from the first mirror that serves it intact.

    A file already there is returned at once, without any network access: only verified
    downloads (or the user's own files) ever carry the final name.

    Args:
        remote: The file and its published checksum.
        directory: Where the file goes (created if needed).
        mirrors: Base URLs, tried in order; ``mirror + remote.name`` is fetched.
        policy: Retries per mirror for transient failures (connection errors, HTTP 5xx/429).
        sleep: Waits between retries (tests pass a fake clock's sleep).
        timeout_s: Socket timeout of each request.

    Returns:
        The path of the verified file.

    Raises:
        DownloadError: every mirror failed; the message lists what each one did.
        DataError: a mirror URL is not https (checked before any request).
    """
    directory = Path(directory)
    target = directory / remote.name
    if target.is_file():
        return target
    if not mirrors:
        raise DownloadError(f"'{target}' is missing and no mirror is configured to download it from: put the file there.")
    for mirror in mirrors:
        check_url(mirror + remote.name)
    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror + remote.name
        try:
            retry_call(
                lambda url=url: _download(url, remote, target, timeout_s),
                policy=policy,
                retry_on=(OSError,),
                sleep=sleep,
                describe=f"Downloading {url}",
            )
        except (_Rejected, OSError) as error:
            logger.warning("Download of %s failed: %s", url, error)
            failures.append(f"{url}: {error}")
            continue
        logger.info("Downloaded %s to %s (checksum verified).", url, target)
        return target
    raise DownloadError(
        f"could not download {remote.name!r} into '{directory}': every mirror failed ("
        + "; ".join(failures)
        + f"). Check the network, or put the file in '{directory}' yourself."
    )


def _download(url: str, remote: RemoteFile, target: Path, timeout_s: float) -> None:
    """One attempt: stream ``url`` to a ``.part`` file, verify it, rename it into place."""
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "trainwell"})
    descriptor, part_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    part = Path(part_name)
    done = False
    try:
        with os.fdopen(descriptor, "wb") as part_file:
            try:
                response = urllib.request.urlopen(request, timeout=timeout_s)
            except urllib.error.HTTPError as error:
                if error.code in TRANSIENT_STATUSES:
                    raise _Transient(f"HTTP {error.code} {error.reason}") from None
                raise _Rejected(f"HTTP {error.code} {error.reason}") from None
            with response:
                content_type = response.headers.get("Content-Type", "")
                if content_type.startswith("text/html"):
                    raise _Rejected(f"served an HTML page (Content-Type {content_type!r}), not the file")
                hasher, expected = remote.hasher()
                announced = response.headers.get("Content-Length", "")
                size = int(announced) if announced.isdigit() else None
                received, cut = 0, False
                bar = progress(total=size, desc=target.name, unit="B", unit_scale=True, leave=False)
                try:
                    while chunk := response.read(CHUNK_BYTES):
                        hasher.update(chunk)
                        part_file.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except http.client.IncompleteRead as error:
                    received, cut = received + len(error.partial), True
                finally:
                    bar.close()
                if cut or (size is not None and received < size):
                    # A transfer cut short is a network failure, worth retrying on the same mirror.
                    raise _Transient(f"connection closed after {received:,} of {size or 'more'} bytes")
        digest = hasher.hexdigest()
        if digest != expected:
            raise _Rejected(f"checksum mismatch: got {digest}, the published one is {expected}")
        ordinary_mode(part)  # mkstemp made it 0600
        os.replace(part, target)
        done = True
    finally:
        if not done:
            part.unlink(missing_ok=True)
