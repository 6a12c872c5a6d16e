"""Fleet side: the static TUF repository — making it, publishing releases, keeping it alive.

Layout of a fleet directory (`bedside ota … --dir FLEET`):

    fleet.toml            expiry periods, warning windows, required bundle format
    keys/root-1.pem …     root keys: meant to live offline (copy them off the
                          build host after `keys`; only `rotate` needs them)
    keys/{targets,snapshot,timestamp}.pem    online role keys (0600)
    rauc/ca.pem, ca.key   RAUC signing CA (its certificate is the box's keyring)
    rauc/signing.pem/.key RAUC bundle signing leaf
    repo/metadata/        TUF metadata: N.root.json, N.targets.json, N.snapshot.json,
                          timestamp.json (+ unversioned copies for the tools)
    repo/targets/         the bundles, as <compatible>/<version>/<sha256>.<name>
`repo/` is static: any HTTPS server, CDN or mirror can serve it. Consistent snapshots
are on: every file a box fetches after timestamp.json is named by its version or
hash and never rewritten, so a mirror mid-sync serves an old or a new set, never a mix.
Old versions are kept (a box may be mid-refresh on them). A change is signed whole
(every key loaded, every role signed) before its first file is written, and the plain
names are swapped last (`FleetRepo.write_chain`): a refused command changes nothing.

Each target carries custom metadata {version, compatible, min_version, rollout}: the
box installs only its own `compatible`, only newer versions, only from versions the
release allows (`min_version`) and only when the rollout includes it (ota/rollout.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from securesystemslib.exceptions import StorageError
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from ota.bundle_check import check_bundle
from ota.errors import FleetError
from ota.fleet_config import ROLES, FleetSettings, load_fleet_settings, write_fleet_settings
from ota.pki import make_signing_pki
from ota.rollout import RolloutPolicy
from ota.version import parse_version

__all__ = ["ONLINE", "FleetRepo", "RoleStatus", "generate_key", "init_fleet", "load_key", "new_key", "write_private"]

ONLINE: Final = ("targets", "snapshot", "timestamp")
_SERIALIZER: Final = JSONSerializer(compact=False)


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def generate_key() -> tuple[bytes, CryptoSigner]:
    """A new Ed25519 key in memory: its PEM (for `write_private`, once it is wanted) and signer."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, CryptoSigner(key)


def new_key(path: Path) -> CryptoSigner:
    pem, signer = generate_key()
    write_private(path, pem)
    return signer


def load_key(path: Path) -> CryptoSigner:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise FleetError(f"{path}: cannot load key: {exc}") from None
    return CryptoSigner(key)


def _write_public(path: Path, data: bytes) -> None:
    """World-readable, not executable (0644 whatever the umask): `repo/` is served as is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(md: Metadata[Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    _write_public(tmp, md.to_bytes(_SERIALIZER))
    os.replace(tmp, path)


def init_fleet(
    fleet: Path, compatible: str, *, root_keys: int = 1, root_threshold: int = 1, now: datetime | None = None,
    settings: FleetSettings | None = None,
) -> None:  # fmt: skip
    """Create role keys, the RAUC PKI, fleet.toml and version-1 metadata with no targets."""
    if not 1 <= root_threshold <= root_keys:
        raise FleetError(f"--root-threshold must be between 1 and --root-keys ({root_keys})")
    if (fleet / "repo" / "metadata" / "root.json").exists():
        raise FleetError(f"{fleet}: a repository exists already; keys are made once")
    now = now or datetime.now(UTC)
    fleet.mkdir(parents=True, exist_ok=True)
    settings = settings or load_fleet_settings(fleet)
    write_fleet_settings(fleet, settings)
    keys = fleet / "keys"
    roots = [new_key(keys / f"root-{i + 1}.pem") for i in range(root_keys)]
    online = {role: new_key(keys / f"{role}.pem") for role in ONLINE}
    root = Root(expires=_expiry(settings, "root", now), consistent_snapshot=True)
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
    write_json(md_root, meta_dir / "1.root.json")
    write_json(md_root, meta_dir / "root.json")
    repo = FleetRepo(fleet)
    repo.write_targets(Targets(expires=_expiry(settings, "targets", now)), now)


def _expiry(settings: FleetSettings, role: str, now: datetime, days: float | None = None) -> datetime:
    return (now + timedelta(days=settings.expiry_days(role) if days is None else days)).replace(microsecond=0)


def _check_versions(*texts: str) -> None:
    for text in texts:
        if text:
            try:
                parse_version(text)
            except ValueError as exc:
                raise FleetError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class RoleStatus:
    role: str
    version: int
    expires: datetime
    days_left: float
    warn: bool  # inside the role's warning window (or expired)

    def line(self) -> str:
        state = "EXPIRED" if self.days_left <= 0 else "WARN" if self.warn else "ok"
        return (f"{self.role:<9} v{self.version:<5} expires {self.expires.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                f"({self.days_left:.1f} days left) {state}")  # fmt: skip


class FleetRepo:
    def __init__(self, fleet: Path) -> None:
        self.fleet = fleet
        self.meta_dir = fleet / "repo" / "metadata"
        self.targets_dir = fleet / "repo" / "targets"
        if not (self.meta_dir / "root.json").exists():
            raise FleetError(f"{fleet}: no repository here (run `bedside ota keys` first)")
        self.settings = load_fleet_settings(fleet)

    def signer(self, role: str) -> CryptoSigner:
        return load_key(self.fleet / "keys" / f"{role}.pem")

    def load(self, role: str) -> Metadata[Any]:
        path = self.meta_dir / f"{role}.json"
        try:
            return Metadata.from_file(str(path))
        except (RepositoryError, StorageError) as exc:  # truncated, edited, not JSON, missing
            why = " ".join(str(exc).split())[:160]
            raise FleetError(f"{path}: unreadable TUF metadata ({why}); restore it from the versioned copy") from None

    def _commit(self, chain: list[Metadata[Any]], bundle: tuple[Path, Path] | None = None) -> None:
        """Sign every role of `chain` (targets → snapshot → timestamp), then write it."""
        self.sign_chain(chain)
        self.write_chain(chain, bundle)

    def sign_chain(self, chain: list[Metadata[Any]], keys: dict[str, CryptoSigner] | None = None) -> None:
        """Every key is loaded and every role signed before the first byte is written, so a
        missing key changes nothing. `keys`: signers to use instead of keys/<role>.pem."""
        signers = {md.signed.type: (keys or {}).get(md.signed.type) or self.signer(md.signed.type) for md in chain}
        for md in chain:
            md.signatures.clear()
            md.sign(signers[md.signed.type])

    def write_chain(self, chain: list[Metadata[Any]], bundle: tuple[Path, Path] | None = None) -> None:
        """The bundle (`bundle`: source, destination) and the versioned files, each new;
        then the plain names, timestamp last. A failure before the plain names removes
        what this call wrote, so no later `refresh` (which reads the plain names) makes a
        refused change live."""
        with self._undo_on_failure() as made:
            if bundle is not None and not bundle[1].exists():
                made.extend(reversed([d for d in bundle[1].parents if not d.exists()]))  # outermost first
                bundle[1].parent.mkdir(parents=True, exist_ok=True)
                made.append(bundle[1])
                tmp = bundle[1].with_name(f".{bundle[1].name}.tmp")
                shutil.copyfile(bundle[0], tmp)
                os.replace(tmp, bundle[1])
            plain = []
            for md in chain:
                role = md.signed.type
                if role != "timestamp":  # the one file fetched by its plain name
                    versioned = self.meta_dir / f"{md.signed.version}.{role}.json"
                    if not versioned.exists():
                        made.append(versioned)
                    write_json(md, versioned)
                tmp = self.meta_dir / f".{role}.json.next"
                made.append(tmp)
                _write_public(tmp, md.to_bytes(_SERIALIZER))
                plain.append((tmp, self.meta_dir / f"{role}.json"))
        for tmp, path in plain:  # renames only: the set is complete on disk already
            os.replace(tmp, path)

    @contextmanager
    def _undo_on_failure(self) -> Iterator[list[Path]]:
        made: list[Path] = []
        try:
            yield made
        except BaseException:
            for path in reversed(made):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)
            raise

    def _expiry(self, role: str, now: datetime, days: float | None = None) -> datetime:
        return _expiry(self.settings, role, now, days)

    def targets_chain(self, targets: Targets, now: datetime) -> list[Metadata[Any]]:
        """New targets version, the snapshot naming it, the timestamp naming that."""
        if (self.meta_dir / "targets.json").exists():
            targets.version = self.load("targets").signed.version + 1
        return [Metadata(targets), *self.snapshot_chain(now, targets.version)]

    def snapshot_chain(self, now: datetime, targets_version: int) -> list[Metadata[Any]]:
        if (self.meta_dir / "snapshot.json").exists():
            snapshot: Snapshot = self.load("snapshot").signed
            snapshot.version += 1
        else:
            snapshot = Snapshot()
        snapshot.meta["targets.json"] = MetaFile(version=targets_version)
        snapshot.expires = self._expiry("snapshot", now)
        return [Metadata(snapshot), self.timestamp_md(now, snapshot.version)]

    def timestamp_md(self, now: datetime, snapshot_version: int, days: float | None = None) -> Metadata[Any]:
        if (self.meta_dir / "timestamp.json").exists():
            timestamp: Timestamp = self.load("timestamp").signed
            timestamp.version += 1
        else:
            timestamp = Timestamp()
        timestamp.snapshot_meta = MetaFile(version=snapshot_version)
        timestamp.expires = self._expiry("timestamp", now, days)
        return Metadata(timestamp)

    def write_targets(self, targets: Targets, now: datetime) -> None:
        """Sign targets, then a snapshot naming it, then a timestamp naming that."""
        self._commit(self.targets_chain(targets, now))

    def write_snapshot(self, now: datetime) -> None:
        self._commit(self.snapshot_chain(now, self.load("targets").signed.version))

    def refresh_timestamp(self, now: datetime | None = None, days: float | None = None) -> Timestamp:
        now = now or datetime.now(UTC)
        md = self.timestamp_md(now, self.load("snapshot").signed.version, days)
        self._commit([md])
        timestamp: Timestamp = md.signed
        return timestamp

    def refresh(self, now: datetime | None = None) -> list[str]:
        """The cron job: snapshot and timestamp every time, targets inside its warning
        window; all with the online keys. Returns the roles re-signed."""
        now = now or datetime.now(UTC)
        targets: Targets = self.load("targets").signed
        if targets.expires - now < timedelta(days=self.settings.warn_days("targets")):
            targets.expires = self._expiry("targets", now)
            self.write_targets(targets, now)
            return ["targets", "snapshot", "timestamp"]
        self.write_snapshot(now)
        return ["snapshot", "timestamp"]

    def status(self, now: datetime | None = None) -> list[RoleStatus]:
        now = now or datetime.now(UTC)
        out = []
        for role in ROLES:
            signed = self.load(role).signed
            left = (signed.expires - now).total_seconds() / 86400
            out.append(RoleStatus(role, signed.version, signed.expires, left, left < self.settings.warn_days(role)))
        return out

    # -- releases ---------------------------------------------------------------------
    def target_file(self, path: str) -> Path:
        """Where the bundle of target `path` is served (hash-prefixed: consistent snapshots)."""
        target: TargetFile = self.load("targets").signed.targets[path]
        head, _, name = path.rpartition("/")
        return self.targets_dir / head / f"{target.hashes['sha256']}.{name}"

    def add_release(
        self, bundle: Path, version: str, compatible: str, min_version: str = "", *, now: datetime | None = None,
        rollout: RolloutPolicy | None = None,
    ) -> str:  # fmt: skip
        """Sign `bundle` as a target without looking inside it (`publish` checks first);
        returns its target path. The bundle is copied into `repo/targets/` only once every
        role is signed, and removed again if the metadata cannot be written."""
        now = now or datetime.now(UTC)
        _check_versions(version, min_version)
        if not bundle.is_file():
            raise FleetError(f"{bundle}: no such bundle")
        self.refuse_republish(compatible, version)
        name = f"{compatible}/{version}/{bundle.name}"
        target = TargetFile.from_file(name, str(bundle), ["sha256"])
        dest = self.targets_dir / compatible / version / f"{target.hashes['sha256']}.{bundle.name}"
        target.unrecognized_fields["custom"] = {
            "version": version,
            "compatible": compatible,
            "min_version": min_version,
            "rollout": (rollout or RolloutPolicy()).to_json(),
        }
        targets: Targets = self.load("targets").signed
        targets.targets[name] = target
        targets.expires = self._expiry("targets", now)
        self._commit(self.targets_chain(targets, now), bundle=(bundle, dest))
        return name

    def refuse_republish(self, compatible: str, version: str) -> None:
        """A published (compatible, version) is never replaced: boxes may be downloading
        it, and its rollout (a halt) would start again from the new release's."""
        for path, target in self.load("targets").signed.targets.items():
            custom = target.custom or {}
            if path.startswith(f"{compatible}/{version}/") or (
                custom.get("compatible") == compatible and custom.get("version") == version
            ):
                raise FleetError(f"{compatible} {version}: already published as {path}; publish a new version")

    def publish(
        self, bundle: Path, version: str, compatible: str, min_version: str = "", *, now: datetime | None = None,
        rollout: RolloutPolicy | None = None,
    ) -> str:  # fmt: skip
        """Verify the bundle as the box's RAUC would (ota/bundle_check.py), then sign it.
        A refusal leaves the repository as it was. `rollout` defaults to the whole fleet
        here; `bedside ota publish` defaults to 0 % (nobody until `bedside ota rollout`)."""
        _check_versions(version, min_version)
        if not bundle.is_file():
            raise FleetError(f"{bundle}: no such bundle")
        self.refuse_republish(compatible, version)  # before rauc info reads the whole bundle
        check_bundle(bundle, self.fleet / "rauc" / "ca.pem", compatible=compatible, version=version,
                     bundle_format=self.settings.bundle_format)  # fmt: skip
        return self.add_release(bundle, version, compatible, min_version, now=now, rollout=rollout)

    def find_release(self, release: str) -> str:
        """A target path from a path or a version (unique across compatibles)."""
        targets: dict[str, TargetFile] = self.load("targets").signed.targets
        if release in targets:
            return release
        found = [p for p, t in targets.items() if (t.custom or {}).get("version") == release]
        if len(found) != 1:
            known = ", ".join(sorted(targets)) or "none"
            what = "several releases" if found else "no release"
            raise FleetError(f"{release}: {what} by that name (give the target path; published: {known})")
        return found[0]

    def set_rollout(self, release: str, change: dict[str, Any], now: datetime | None = None) -> RolloutPolicy:
        """Change a release's rollout (`percent`, `halted`, `cohorts`, `not_before`) and
        re-sign targets, snapshot, timestamp."""
        now = now or datetime.now(UTC)
        path = self.find_release(release)
        targets: Targets = self.load("targets").signed
        target = targets.targets[path]
        custom = dict(target.custom or {})
        merged = {**RolloutPolicy().to_json(), **(custom.get("rollout") or {}), **change}
        try:
            policy = RolloutPolicy(
                percent=merged["percent"], cohorts=tuple(merged["cohorts"]), halted=bool(merged["halted"]),
                not_before=datetime.fromisoformat(merged["not_before"].replace("Z", "+00:00"))
                if merged["not_before"] else None,
            )  # fmt: skip
        except ValueError as exc:
            raise FleetError(f"{path}: {exc}") from None
        custom["rollout"] = policy.to_json()
        target.unrecognized_fields["custom"] = custom
        self.write_targets(targets, now)
        return policy
