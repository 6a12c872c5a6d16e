"""`bedside ota rotate ROLE`: replace a role's keys by a new root version.

Every rotation is a new `N.root.json`, signed by a threshold of the current root keys
(the offline ones: `--root-key` names them where they are mounted, default
`keys/root-*.pem`). Boxes follow the chain: python-tuf's client fetches `N+1.root.json`
until there is none, checking each against the previous root's keys and threshold
and its own, so a box that skipped several rotations still gets there.

- targets / snapshot / timestamp: a new online key replaces the old one in root;
  the role is then re-signed (new version) with the new key. The old key file moves
  to `keys/retired/`, so it is not used by accident and is there to be destroyed.
- root: new root keys (`--new-keys`, `--threshold`); the new root is signed by the old
  threshold and by all the new keys, as TUF requires for the chain to verify. The old
  root key files move to `keys/retired/`; copy the new ones offline.
A refused rotation (too few or unknown root keys) writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root

from ota.errors import FleetError
from ota.repo import ONLINE, FleetRepo, load_key, new_key, write_json

__all__ = ["rotate"]


def _root_signers(repo: FleetRepo, root: Root, paths: list[Path]) -> list[CryptoSigner]:
    paths = paths or sorted((repo.fleet / "keys").glob("root-*.pem"))
    role = root.roles["root"]
    signers = []
    for path in paths:
        signer = load_key(path)
        if signer.public_key.keyid not in role.keyids:
            raise FleetError(f"{path}: not one of the current root keys")
        signers.append(signer)
    if len({s.public_key.keyid for s in signers}) < role.threshold:
        raise FleetError(f"rotation needs {role.threshold} of the current root keys, {len(signers)} given (--root-key)")
    return signers[: role.threshold] if len(signers) > role.threshold else signers


def _retire(path: Path, tag: str) -> None:
    retired = path.parent / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    path.replace(retired / f"{path.stem}-{tag}.pem")


def _new_root_keys(root: Root, keys: Path, new_keys: int, threshold: int) -> list[CryptoSigner]:
    count = new_keys or len(root.roles["root"].keyids)
    wanted = threshold or root.roles["root"].threshold
    if not 1 <= wanted <= count:
        raise FleetError(f"--threshold must be between 1 and --new-keys ({count})")
    signers = [new_key(keys / f".new-root-{i + 1}.pem") for i in range(count)]
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    for signer in signers:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = wanted
    return signers


def _swap_key_files(keys: Path, role: str, count: int, tag: str) -> None:
    """Only once the new root is signed: the new key files take the old ones' names."""
    if role == "root":
        for old in sorted(keys.glob("root-*.pem")):
            _retire(old, tag)
        for i in range(count):
            (keys / f".new-root-{i + 1}.pem").replace(keys / f"root-{i + 1}.pem")
    else:
        _retire(keys / f"{role}.pem", tag)
        (keys / f".new-{role}.pem").replace(keys / f"{role}.pem")


def rotate(
    repo: FleetRepo, role: str, *, root_keys: list[Path] | None = None, new_keys: int = 0, threshold: int = 0,
    now: datetime | None = None,
) -> int:  # fmt: skip
    """Rotate `role`'s keys; returns the new root version."""
    if role not in ("root", *ONLINE):
        raise FleetError(f"{role}: not a role (root, targets, snapshot, timestamp)")
    now = now or datetime.now(UTC)
    root: Root = repo.load("root").signed
    old_signers = _root_signers(repo, root, root_keys or [])
    root.version += 1
    root.expires = (now + timedelta(days=repo.settings.expiry_days("root"))).replace(microsecond=0)
    keys = repo.fleet / "keys"
    new_signers: list[CryptoSigner] = []
    if role == "root":
        new_signers = _new_root_keys(root, keys, new_keys, threshold)
    else:
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(new_key(keys / f".new-{role}.pem").public_key, role)
    md = Metadata(root)
    for signer in old_signers + new_signers:
        md.sign(signer, append=True)
    _swap_key_files(keys, role, len(new_signers), f"v{root.version - 1}")
    write_json(md, repo.meta_dir / f"{root.version}.root.json")
    write_json(md, repo.meta_dir / "root.json")
    # The rotated role is re-signed at once with its new key (a new version of it).
    if role == "targets":
        repo.write_targets(repo.load("targets").signed, now)
    elif role == "snapshot":
        repo.write_snapshot(now)
    elif role == "timestamp":
        repo.refresh_timestamp(now)
    return root.version
