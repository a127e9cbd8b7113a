"""Where artifacts live: a local folder, or a bucket (gs://, s3://...) through fsspec.

A local location is a plain pathlib.Path and keeps the temporary-file-then-rename write. A URL is
a universal_pathlib UPath on its fsspec filesystem. An object store has no rename worth the name
(gcsfs emulates mv as copy + delete, after a moveTo call the emulator refuses). GCS creates an
object only when its upload finishes, but a server that reads a cut-off request as complete (the
GCS emulator does: a worker killed mid-upload left half a summary under its final name) would
show part of one. So an object is uploaded whole under a temporary name, then copied server-side
to its own name: a reader sees no object or the whole one, whatever the upload's fate. Objects
too large to hold in memory (extracts) are streamed and then named by a small marker written
after them (bqx_queue.runner.extract_cache).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bqx_queue.domain import ConfigError, MissingExtra, StoreUnwritable

ArtifactPath = Any  # pathlib.Path for a local folder, upath.UPath for a bucket (the same API)
# fsspec's default gs:// class probes each bucket for a hierarchical namespace over gRPC; the GCS
# emulator never answers and every first call stalls 60 s, so against an emulator use the core class
EMULATOR_HOST = "STORAGE_EMULATOR_HOST"
# a bucket's protocol -> the extra that installs its filesystem, and the package it brings
EXTRAS = {"gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs"), "s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs")}


def is_url(location: str | Path) -> bool:
    """Return whether a location names an fsspec filesystem (gs://, s3://, memory://...)."""
    return "://" in str(location) and not str(location).startswith("file://")


def artifact_root(location: str | Path) -> ArtifactPath:
    """Return the folder at `location`: a Path for a local folder, a UPath for a bucket URL."""
    if not is_url(location):
        return Path(str(location).removeprefix("file://"))
    try:
        from upath import UPath
    except ImportError:  # pragma: no cover - upath is a dependency
        raise ConfigError(f"runs_dir {location} is a URL, but universal_pathlib is not installed") from None
    protocol = str(location).split("://", 1)[0]
    require_filesystem(location, protocol)
    # every host polls for other hosts' objects: a cached listing would hide them
    options: dict[str, Any] = {"use_listings_cache": False}
    if protocol in ("gs", "gcs"):
        _gcs_options(protocol, options)
    try:
        return UPath(str(location), **options)
    except (ImportError, ValueError) as exc:
        extra = "gcs" if protocol in ("gs", "gcs") else "s3" if protocol in ("s3", "s3a") else None
        hint = f" (install bqx-queue[{extra}])" if extra else ""
        raise ConfigError(f"runs_dir {location}: no filesystem for {protocol}://{hint}: {exc}") from None


def require_filesystem(location: str | Path, protocol: str) -> None:
    """Raise MissingExtra (one line naming the extra to install) when the protocol's fsspec
    filesystem is not installed, and ConfigError when fsspec knows no such protocol."""
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra, package = EXTRAS.get(protocol, (None, None))
        if extra:
            raise MissingExtra(
                f"runs_dir {location} needs {package}, which is not installed: install 'bqx-queue[{extra}]'"
            ) from None
        raise MissingExtra(f"runs_dir {location} needs a package that is not installed: {exc}") from None
    except ValueError:
        raise ConfigError(f"runs_dir {location}: no filesystem for {protocol}://") from None


def _gcs_options(protocol: str, options: dict[str, Any]) -> None:
    """A request that stalls is abandoned after bucket_stall_s of silence and retried by gcsfs
    (6 tries, backing off 1 to 16 s, as for 5xx, 408 and 429 answers). gcsfs's own timeout, a
    number, is a total whose expiry it does not retry (and is 5 minutes unset)."""
    import aiohttp

    from bqx_queue.config import load_settings

    stall_s = load_settings().bucket_stall_s
    options["requests_timeout"] = aiohttp.ClientTimeout(sock_connect=stall_s, sock_read=stall_s)
    if not os.environ.get(EMULATOR_HOST):
        return
    import fsspec
    import gcsfs.core

    fsspec.register_implementation(protocol, gcsfs.core.GCSFileSystem, clobber=True)
    options["token"] = "anon"  # the emulator takes no credentials


def is_local(path: ArtifactPath) -> bool:
    return type(path).__module__.startswith("pathlib")


def write_whole(path: ArtifactPath, write: Callable[[IO[bytes]], Any]) -> None:
    """Write an artifact so a reader on any host sees the old one or the whole new one; raises
    StoreUnwritable when the folder or bucket refuses it (after the bucket filesystem's own
    retries), leaving the old artifact or none under the name."""
    if is_local(path):
        try:
            _write_local(path, write)
        except OSError as exc:  # read-only, full, or not ours to write
            raise StoreUnwritable(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    buffer = io.BytesIO()
    write(buffer)
    staged = f"{path.parent.path}/.{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        path.fs.pipe_file(staged, buffer.getvalue())
        try:
            path.fs.copy(staged, path.path)  # server-side: the final name gets the whole object or none
        finally:
            with contextlib.suppress(Exception):  # a staged leftover is never read: it has no final name
                path.fs.rm_file(staged)
    except Exception as exc:  # gcsfs/s3fs raise their own errors once their retries are spent
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # HTTP errors span lines
        raise StoreUnwritable(f"cannot write {path}: {reason}") from None


def _write_local(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the folder may have become read-only meanwhile
            tmp.unlink(missing_ok=True)
        raise


def modified_at(path: ArtifactPath) -> datetime:
    """Return when an artifact was last written."""
    return datetime.fromtimestamp(float(path.stat().st_mtime), UTC)


def children(folder: ArtifactPath, pattern: str) -> Iterator[ArtifactPath]:
    """Yield the folder's entries matching a glob pattern, sorted; none when it does not exist."""
    try:
        yield from sorted(folder.glob(pattern), key=str)
    except FileNotFoundError:
        return


def remove(path: ArtifactPath) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
