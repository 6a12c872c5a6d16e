"""Box side of TUF: refresh metadata, list the releases, pick one, download it verified.

python-tuf's ngclient `Updater` does the trust decisions (signatures, thresholds,
expiry = freeze, version rollback, snapshot/targets consistency = mix-and-match)
over our mutual-TLS fetcher. The release list is read from the targets metadata
ngclient has just verified and persisted; the chosen bundle is downloaded with
resume and checked against the length and sha256 in that signed metadata before
anything else sees it. Every refusal is a `RefusedUpdate` with a stable reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from tuf.api import exceptions
from tuf.api.metadata import Metadata, TargetFile
from tuf.ngclient import Updater, UpdaterConfig

from ota.errors import RefusedUpdate
from ota.fetch import MtlsFetcher, transport_refusal
from ota.rollout import FULL, RolloutPolicy, eligible
from ota.version import parse_version

__all__ = ["Box", "Release", "UpdateClient", "choose_release"]


@dataclass(frozen=True, slots=True)
class Release:
    path: str  # TUF target path
    version: str
    compatible: str
    min_version: str
    length: int
    rollout: RolloutPolicy = FULL


@dataclass(frozen=True, slots=True)
class Box:
    """Who is choosing, and when: the rollout's inputs."""

    gateway_id: str
    now: datetime


def choose_release(
    releases: list[Release], compatible: str, installed: str, given_up: frozenset[str] = frozenset(),
    box: Box | None = None,
) -> tuple[Release | None, list[str]]:  # fmt: skip
    """The newest release this box may install, and why the others were passed over. Pure.
    With `box`, a release whose rollout does not include the box is passed over too."""
    skipped: list[str] = []
    current = parse_version(installed)
    candidates = []
    for rel in releases:
        try:
            version = parse_version(rel.version)
            minimum = parse_version(rel.min_version) if rel.min_version else None
        except ValueError as exc:
            skipped.append(f"{rel.path}: {exc}")
            continue
        if rel.compatible != compatible:
            skipped.append(f"{rel.path}: for {rel.compatible!r}, this box is {compatible!r}")
        elif version <= current:
            skipped.append(f"{rel.path}: {rel.version} is not newer than installed {installed}")
        elif minimum is not None and current < minimum:
            skipped.append(f"{rel.path}: needs {rel.min_version} or later installed first")
        elif rel.version in given_up:
            skipped.append(f"{rel.path}: given up on {rel.version} after failed boots")
        elif box is not None and not (offered := eligible(rel.rollout, box.gateway_id, box.now))[0]:
            skipped.append(f"{rel.path}: {offered[1]}")
        else:
            candidates.append((version, rel))
    if not candidates:
        return None, skipped
    return max(candidates, key=lambda c: c[0])[1], skipped


_MIX: Final = re.compile(r"^Expected (snapshot version|\w+ v\d)")


def classify(exc: Exception) -> RefusedUpdate:
    """TUF and transport failures -> the refusal reasons the fleet sees."""
    text = str(exc)
    if isinstance(exc, RefusedUpdate):
        return exc
    if isinstance(exc, exceptions.ExpiredMetadataError):
        return RefusedUpdate("freeze", text)
    if isinstance(exc, exceptions.BadVersionNumberError):
        return RefusedUpdate("mix_and_match" if _MIX.match(text) else "rollback", text)
    if isinstance(exc, exceptions.UnsignedMetadataError):
        return RefusedUpdate("bad_signature", text)
    if isinstance(exc, exceptions.LengthOrHashMismatchError):
        return RefusedUpdate("tampered", text)
    if isinstance(exc, exceptions.DownloadLengthMismatchError):
        return RefusedUpdate("oversized", text)
    if isinstance(exc, exceptions.SlowRetrievalError):
        return RefusedUpdate("slow_retrieval", text)
    if isinstance(exc, exceptions.DownloadHTTPError):
        return RefusedUpdate("client_refused" if exc.status_code in (400, 401, 403, 495, 496) else "http_error", text)
    if isinstance(exc, exceptions.DownloadError):
        cause = exc.__cause__ or exc.__context__
        return (
            transport_refusal("fleet server", cause)
            if isinstance(cause, OSError)
            else RefusedUpdate("unreachable", text)
        )
    if isinstance(exc, exceptions.RepositoryError):
        return RefusedUpdate("repository_error", text)
    return RefusedUpdate("error", f"{type(exc).__name__}: {text}")


class UpdateClient:
    def __init__(self, metadata_dir: Path, base_url: str, fetcher: MtlsFetcher, downloads: Path) -> None:
        """`metadata_dir` must hold a trusted root.json (put there by the image / provisioning)."""
        self.metadata_dir = metadata_dir
        self.base_url = base_url.rstrip("/")
        self.fetcher = fetcher
        self.downloads = downloads
        self._updater: Updater | None = None

    def _new_updater(self) -> Updater:
        return Updater(
            str(self.metadata_dir),
            f"{self.base_url}/metadata/",
            str(self.downloads),
            f"{self.base_url}/targets/",
            self.fetcher,
            UpdaterConfig(prefix_targets_with_hash=False),
        )

    def check(self) -> list[Release]:
        """Refresh the metadata (top-level roles) and list the releases it signs."""
        try:
            self._updater = self._new_updater()
            self._updater.refresh()
            targets: Metadata[Any] = Metadata.from_file(str(self.metadata_dir / "targets.json"))
        except Exception as exc:  # every TUF/transport failure becomes a refusal with a reason
            raise classify(exc) from None
        releases = []
        for path, target in targets.signed.targets.items():
            custom = target.custom or {}
            releases.append(
                Release(
                    path,
                    str(custom.get("version", "")),
                    str(custom.get("compatible", "")),
                    str(custom.get("min_version", "")),
                    target.length,
                    RolloutPolicy.from_json(custom.get("rollout")),
                )
            )
        return releases

    def _served_path(self, info: TargetFile) -> str:
        """With consistent snapshots the file is served as <dir>/<sha256>.<name>."""
        root: Metadata[Any] = Metadata.from_file(str(self.metadata_dir / "root.json"))
        if not root.signed.consistent_snapshot:
            return info.path
        head, _, name = info.path.rpartition("/")
        return f"{head}/{info.hashes['sha256']}.{name}".lstrip("/")

    def download(self, release: Release) -> Path:
        """The bundle, verified against the signed length and hashes; resumes a partial file."""
        if self._updater is None:
            raise RefusedUpdate("error", "download before check")
        info: TargetFile | None = self._updater.get_targetinfo(release.path)
        if info is None:
            raise RefusedUpdate("not_found", f"{release.path} is not in the signed targets")
        self.downloads.mkdir(parents=True, exist_ok=True)
        name = release.path.replace("/", "_")
        part = self.downloads / f"{name}.part"
        final = self.downloads / name
        self.fetcher.download_resumable(f"{self.base_url}/targets/{self._served_path(info)}", part, info.length)
        try:
            with part.open("rb") as f:
                info.verify_length_and_hashes(f)
        except exceptions.LengthOrHashMismatchError as exc:
            part.unlink(missing_ok=True)  # a tampered file is never resumed from
            raise RefusedUpdate("tampered", str(exc)) from None
        part.replace(final)
        return final
