"""Fleet side: TUF role keys, the RAUC signing PKI, publishing releases, timestamps.

Layout of a fleet directory (`bedside ota … --dir FLEET`):

    keys/root-1.pem …     root keys: meant to live offline (copy them off the
                          build host after `keys`; `publish` does not need them)
    keys/{targets,snapshot,timestamp}.pem    online role keys (0600)
    rauc/ca.pem, ca.key   RAUC signing CA (its certificate is the box's keyring)
    rauc/signing.pem/.key RAUC bundle signing leaf
    repo/metadata/        TUF metadata (1.root.json, root.json, targets.json, …)
    repo/targets/         the bundles
`repo/` is static: any HTTPS server can serve it.

Each target carries custom metadata {version, compatible, min_version}: the box
installs only its own `compatible`, only newer versions, and only from versions
the release allows (`min_version`).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from ota.errors import FleetError
from ota.pki import make_signing_pki
from ota.version import parse_version

__all__ = ["EXPIRY_DAYS", "FleetRepo", "init_fleet"]

EXPIRY_DAYS: Final = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1}
ONLINE: Final = ("targets", "snapshot", "timestamp")


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _new_key(path: Path) -> CryptoSigner:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(path, pem)
    return CryptoSigner(key)


def _load_key(path: Path) -> CryptoSigner:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise FleetError(f"{path}: cannot load key: {exc}") from None
    return CryptoSigner(key)


def _expiry(role: str, now: datetime, days: float | None = None) -> datetime:
    return (now + timedelta(days=EXPIRY_DAYS[role] if days is None else days)).replace(microsecond=0)


_SERIALIZER: Final = JSONSerializer(compact=False)


def init_fleet(
    fleet: Path, compatible: str, *, root_keys: int = 1, root_threshold: int = 1, now: datetime | None = None
) -> None:
    """Create role keys, the RAUC PKI and version-1 metadata with no targets."""
    if not 1 <= root_threshold <= root_keys:
        raise FleetError(f"--root-threshold must be between 1 and --root-keys ({root_keys})")
    if (fleet / "repo" / "metadata" / "root.json").exists():
        raise FleetError(f"{fleet}: a repository exists already; keys are made once")
    now = now or datetime.now(UTC)
    keys = fleet / "keys"
    roots = [_new_key(keys / f"root-{i + 1}.pem") for i in range(root_keys)]
    online = {role: _new_key(keys / f"{role}.pem") for role in ONLINE}
    root = Root(expires=_expiry("root", now), consistent_snapshot=False)
    for signer in roots:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = root_threshold
    for role, signer in online.items():
        root.add_key(signer.public_key, role)
    make_signing_pki(fleet / "rauc", compatible)
    meta_dir = fleet / "repo" / "metadata"
    meta_dir.mkdir(parents=True, exist_ok=True)
    (fleet / "repo" / "targets").mkdir(parents=True, exist_ok=True)
    md_root = Metadata(root)
    for signer in roots:
        md_root.sign(signer, append=True)
    md_root.to_file(str(meta_dir / "1.root.json"), _SERIALIZER)
    md_root.to_file(str(meta_dir / "root.json"), _SERIALIZER)
    repo = FleetRepo(fleet)
    repo.write_targets(Targets(expires=_expiry("targets", now)), now)


class FleetRepo:
    def __init__(self, fleet: Path) -> None:
        self.fleet = fleet
        self.meta_dir = fleet / "repo" / "metadata"
        self.targets_dir = fleet / "repo" / "targets"
        if not (self.meta_dir / "root.json").exists():
            raise FleetError(f"{fleet}: no repository here (run `bedside ota keys` first)")

    def _signer(self, role: str) -> CryptoSigner:
        return _load_key(self.fleet / "keys" / f"{role}.pem")

    def _load(self, role: str) -> Metadata[Any]:
        return Metadata.from_file(str(self.meta_dir / f"{role}.json"))

    def _save(self, md: Metadata[Any], role: str) -> None:
        md.signatures.clear()
        md.sign(self._signer(role))
        tmp = self.meta_dir / f".{role}.json.tmp"
        md.to_file(str(tmp), _SERIALIZER)
        os.replace(tmp, self.meta_dir / f"{role}.json")

    def write_targets(self, targets: Targets, now: datetime) -> None:
        """Sign targets, then a snapshot naming it, then a timestamp naming that."""
        if (self.meta_dir / "targets.json").exists():
            targets.version = self._load("targets").signed.version + 1
        self._save(Metadata(targets), "targets")
        if (self.meta_dir / "snapshot.json").exists():
            snapshot: Snapshot = self._load("snapshot").signed
            snapshot.version += 1
        else:
            snapshot = Snapshot()
        snapshot.meta["targets.json"] = MetaFile(version=targets.version)
        snapshot.expires = _expiry("snapshot", now)
        self._save(Metadata(snapshot), "snapshot")
        self.refresh_timestamp(now)

    def refresh_timestamp(self, now: datetime | None = None, days: float | None = None) -> Timestamp:
        now = now or datetime.now(UTC)
        snapshot_version = self._load("snapshot").signed.version
        if (self.meta_dir / "timestamp.json").exists():
            timestamp: Timestamp = self._load("timestamp").signed
            timestamp.version += 1
        else:
            timestamp = Timestamp()
        timestamp.snapshot_meta = MetaFile(version=snapshot_version)
        timestamp.expires = _expiry("timestamp", now, days)
        self._save(Metadata(timestamp), "timestamp")
        return timestamp

    def publish(
        self, bundle: Path, version: str, compatible: str, min_version: str = "", now: datetime | None = None
    ) -> str:
        """Add `bundle` as a target; returns its target path."""
        now = now or datetime.now(UTC)
        for text in (version, min_version):
            if text:
                try:
                    parse_version(text)
                except ValueError as exc:
                    raise FleetError(str(exc)) from None
        if not bundle.is_file():
            raise FleetError(f"{bundle}: no such bundle")
        name = f"{compatible}/{version}/{bundle.name}"
        dest = self.targets_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, dest)
        target = TargetFile.from_file(name, str(dest), ["sha256"])
        target.unrecognized_fields["custom"] = {
            "version": version,
            "compatible": compatible,
            "min_version": min_version,
        }
        targets: Targets = self._load("targets").signed
        targets.targets[name] = target
        targets.expires = _expiry("targets", now)
        self.write_targets(targets, now)
        return name
