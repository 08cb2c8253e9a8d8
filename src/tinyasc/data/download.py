"""Download, verify and extract the TAU Urban Acoustic Scenes 2020 Mobile packages (Zenodo).

- resumes a partial file (``NAME.part``) with an HTTP Range request; a server that ignores the range
  (200 instead of 206) restarts the file from zero;
- retries connection drops, timeouts and 5xx answers with exponential backoff, resuming each time;
- verifies each archive's md5 before extracting; a mismatch deletes the archive (it is corrupt) and
  counts as a failed attempt;
- extracts into a hidden staging folder inside DEST, then moves the members into place and writes a
  completion record (``DEST/.tinyasc_download/<package>.json`` with the md5 and every member's size):
  a run that stops part-way never reports a half-extracted tree as done;
- running again skips packages whose record matches the files on disk and repairs the rest
  (re-extracting from the kept archive, or downloading again).

Package list, URLs and md5: reference ``tau2020_download.md`` (Zenodo records 3819968 and 3685828). The
2021 evaluation set (record 4767109) is not listed: its checksums are not known to us.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import shutil
import stat
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tinyasc.io import atomic_write_json

log = logging.getLogger(__name__)

ZENODO = "https://zenodo.org/record/{record}/files/{filename}?download=1"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Package:
    filename: str
    md5: str
    record: int


def _dev(name: str, md5: str) -> Package:
    return Package(f"TAU-urban-acoustic-scenes-2020-mobile-development.{name}.zip", md5, 3819968)


def _eval(name: str, md5: str) -> Package:
    return Package(f"TAU-urban-acoustic-scenes-2020-mobile-evaluation.{name}.zip", md5, 3685828)


SETS: dict[str, list[Package]] = {
    "development": [
        _dev("doc", "175f40dc3fec144347abad4d2962b7ae"),
        _dev("meta", "6eae9db553ce48e4ea246e34e50a3cf5"),
        _dev("audio.1", "b1e85b8a908d3d6a6ab73268f385d5c8"),
        _dev("audio.2", "4310a13cc2943d6ce3f70eba7ba4c784"),
        _dev("audio.3", "ed38956c4246abb56190c1e9b602b7b8"),
        _dev("audio.4", "97ab8560056b6816808dedc044dcc023"),
        _dev("audio.5", "b50f5e0bfed33cd8e52cb3e7f815c6cb"),
        _dev("audio.6", "fbf856a3a86fff7520549c899dc94372"),
        _dev("audio.7", "0dbffe7b6e45564da649378723284062"),
        _dev("audio.8", "bb6f77832bf0bd9f786f965beb251b2e"),
        _dev("audio.9", "a65596a5372eab10c78e08a0de797c9e"),
        _dev("audio.10", "2ad595819ffa1d56d2de4c7ed43205a6"),
        _dev("audio.11", "0ad29f7040a4e6a22cfd639b3a6738e5"),
        _dev("audio.12", "e5f4400c6b9697295fab4cf507155a2f"),
        _dev("audio.13", "8855ab9f9896422746ab4c5d89d8da2f"),
        _dev("audio.14", "092ad744452cd3e7de78f988a3d13020"),
        _dev("audio.15", "4b5eb85f6592aebf846088d9df76b420"),
        _dev("audio.16", "2e0a89723e58a3836be019e6996ae460"),
    ],
    "evaluation-2020": [
        _eval("doc", "2f1ac2991111c6ee1d51bec6e27bd825"),
        _eval("meta", "b8d9bb50faa282be170b81dc57e2b8b3"),
        _eval("audio.1", "632841f6b1ef9ed962ea61f879967411"),
        _eval("audio.2", "711fb0469f9b66669a300ebd1de24e9b"),
        _eval("audio.3", "575e517b826a5faf020be22ce766adf8"),
        _eval("audio.4", "5919fcbe217964756892a9661323c020"),
        _eval("audio.5", "c733767217f16c746f50796c65ca1dd6"),
        _eval("audio.6", "f39feb24910ffc97413e9c94b418f7ab"),
        _eval("audio.7", "90bad61f14163146702d430cf8241932"),
        _eval("audio.8", "4db5255382a5e5cab2d463c0d836b888"),
    ],
}


class DownloadError(RuntimeError):
    """A package that could not be fetched, verified or extracted; names the file and the reason."""


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, timeout: float, bar) -> None:
    """One attempt: continue ``part`` from its current size. Raises on any transport problem."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is already whole
            return
        raise
    with resp:
        if have and resp.status != 206:  # the server ignored the range: start over
            have = 0
        total = resp.headers.get("Content-Length")
        if bar is not None:
            bar.reset(total=(int(total) + have) if total else None)
            bar.update(have)
        with open(part, "ab" if have else "wb") as f:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                if bar is not None:
                    bar.update(len(block))
        if total is not None and part.stat().st_size < have + int(total):
            raise http.client.IncompleteRead(b"", have + int(total) - part.stat().st_size)


def download_file(
    url: str,
    dest: Path,
    md5: str,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest`` (via ``dest.part``), resuming and retrying, and verify its md5."""
    from tqdm import tqdm

    if dest.exists() and md5_of(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    bar = tqdm(
        desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=False
    )
    last = "no attempt made"
    try:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                _fetch(url, part, timeout, bar)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise DownloadError(
                        f"{dest}: disk full; the partial file {part} is kept for resumption"
                    ) from None
                if isinstance(e, urllib.error.HTTPError) and e.code < 500:
                    raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
                last = f"{type(e).__name__}: {e}"
                log.warning("%s: attempt %d failed (%s); resuming", dest.name, attempt + 1, last)
                continue
            except (TimeoutError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
                log.warning("%s: attempt %d failed (%s); resuming", dest.name, attempt + 1, last)
                continue
            got = md5_of(part)
            if got == md5:
                os.replace(part, dest)
                return dest
            part.unlink()
            last = f"md5 {got} does not match the expected {md5} (corrupt download removed)"
            log.warning("%s: %s", dest.name, last)
    finally:
        bar.close()
    raise DownloadError(f"{dest.name}: gave up after {retries + 1} attempts: {last}")


def _record_path(dest: Path, pkg: Package) -> Path:
    return dest / ".tinyasc_download" / f"{pkg.filename}.json"


def is_complete(dest: Path, pkg: Package) -> bool:
    """The package was extracted and every member is on disk with its size."""
    rec = _record_path(dest, pkg)
    if not rec.exists():
        return False
    info = json.loads(rec.read_text())
    if info.get("md5") != pkg.md5:
        return False
    return all(
        (dest / name).is_file() and (dest / name).stat().st_size == size
        for name, size in info["members"].items()
    )


def extract(archive: Path, dest: Path, pkg: Package) -> None:
    """Extract into a staging folder, move members into place, then write the completion record."""
    staging = dest / f".extract-{pkg.filename}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as z:
            members = {}
            for info in z.infolist():
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise DownloadError(f"{archive.name}: unsafe member path {info.filename!r}")
                if stat.S_ISLNK(
                    info.external_attr >> 16
                ):  # the dataset holds files only; a link could point anywhere
                    raise DownloadError(
                        f"{archive.name}: member {info.filename!r} is a symbolic link; refused"
                    )
                if not info.is_dir():
                    members[str(name)] = info.file_size
            z.extractall(staging)
    except zipfile.BadZipFile as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(
            f"{archive}: not a valid zip archive ({e}); delete it to download again"
        ) from None
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise DownloadError(f"{archive.name}: disk full while extracting into {dest}") from None
        raise DownloadError(
            f"{archive.name}: cannot extract into {dest} ({e.strerror or e}: {e.filename})"
        ) from None
    for name in members:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    shutil.rmtree(staging, ignore_errors=True)
    atomic_write_json(_record_path(dest, pkg), {"md5": pkg.md5, "members": members})


def fetch_package(pkg: Package, dest: Path, base_url: str, keep_archive: bool, progress: bool, **kw) -> str:
    if is_complete(dest, pkg):
        return "complete"
    archive = dest / ".tinyasc_download" / pkg.filename
    url = base_url.format(record=pkg.record, filename=pkg.filename)
    download_file(url, archive, pkg.md5, progress=progress, **kw)
    extract(archive, dest, pkg)
    if not keep_archive:
        archive.unlink()
    return "extracted"


def download(
    dest: str | Path,
    set_name: str = "development",
    base_url: str = ZENODO,
    parallel: int = 2,
    keep_archives: bool = True,
    progress: bool = True,
    packages: list[Package] | None = None,
    **kw,
) -> dict[str, str]:
    """Fetch every package of ``set_name`` into ``dest``; returns package -> 'complete' | 'extracted'.

    Raises DownloadError listing every package that failed (the others are finished regardless).
    """
    if packages is None:
        if set_name not in SETS:
            raise DownloadError(f"unknown set {set_name!r}; expected one of {', '.join(SETS)}")
        packages = SETS[set_name]
    if "{filename}" not in base_url:
        raise DownloadError(f"base URL {base_url!r} must contain {{filename}} (and may contain {{record}})")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    results: dict[str, str] = {}
    errors: list[str] = []

    def one(pkg: Package) -> None:
        try:
            results[pkg.filename] = fetch_package(pkg, dest, base_url, keep_archives, progress, **kw)
        except DownloadError as e:
            errors.append(str(e))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, packages))
    if errors:
        raise DownloadError(f"{len(errors)} package(s) failed:\n" + "\n".join(sorted(errors)))
    return results
