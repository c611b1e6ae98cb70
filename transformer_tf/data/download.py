"""Files named by URL: downloaded once into a cache folder, atomically, checksum-verified."""

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from transformer_tf.errors import UserError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_SECONDS = 60


def is_url(location):
    return str(location).startswith(("http://", "https://"))


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "transformer_tf"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(url, cache_dir):
    """Where `url` is kept: a folder per URL (so equal file names never collide), holding
    the file under its own name (so `.gz` is still recognised)."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "download"
    return Path(cache_dir) / key / name


def fetch(location, cache_dir=None, sha256=None):
    """A local path for `location`: itself if it is a path, else the cached download.

    A URL is fetched only when it is not in the cache. The download goes to a temporary
    name and is renamed when complete and verified, so an interrupted or corrupt download
    never looks cached. Raises `UserError` when the download fails or `sha256` differs.
    """
    if not is_url(location):
        return Path(location)
    path = cached_path(location, cache_dir or default_cache_dir())
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".part{os.getpid()}")
    log.info("downloading %s", location)
    try:
        _download(location, partial)
        actual = sha256_of(partial)
        if sha256 and actual != sha256.lower():
            raise UserError(
                f"the download of {location} has SHA-256 {actual}, but the config "
                f"expects {sha256}; it was deleted. Check the URL and 'data.sha256'."
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    log.info("saved %s (%s bytes, SHA-256 %s)", path, f"{path.stat().st_size:,}", actual)
    return path


def _download(url, destination):
    """Stream `url` to `destination`, logging progress every few seconds."""
    try:
        with (
            urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response,
            open(destination, "wb") as out,
        ):
            total = int(response.headers.get("Content-Length") or 0)
            done, last_report = 0, time.monotonic()
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last_report > 5:
                    share = f" of {total:,} ({100 * done / total:.0f}%)" if total else ""
                    log.info("  %s bytes%s", f"{done:,}", share)
                    last_report = time.monotonic()
    except urllib.error.HTTPError as err:
        raise UserError(
            f"could not download {url}: HTTP {err.code} {err.reason}; check the URL in the config."
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"could not download {url}: {reason}; check the network, or download "
            "the file by hand and give its local path instead."
        ) from None
