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
A refused rotation (too few, unknown or duplicated root keys; a new root that would not
verify against the current and its own keys) writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from ota.errors import FleetError
from ota.repo import ONLINE, FleetRepo, generate_key, load_key, write_json, write_private

__all__ = ["rotate"]

NewKeys = dict[str, bytes]  # key file name -> PEM, written only once the new root verifies


def _root_signers(repo: FleetRepo, root: Root, paths: list[Path]) -> list[CryptoSigner]:
    """A threshold of *different* current root keys: two paths holding one key count once
    (a root signed twice by one key is one signature to TUF, below a threshold of 2)."""
    paths = paths or sorted((repo.fleet / "keys").glob("root-*.pem"))
    role = root.roles["root"]
    found: dict[str, tuple[Path, CryptoSigner]] = {}
    same = ""
    for path in paths:
        signer = load_key(path)
        keyid = signer.public_key.keyid
        if keyid not in role.keyids:
            raise FleetError(f"{path}: not one of the current root keys")
        if keyid in found:
            same = same or f": {found[keyid][0]} and {path} are the same key"
            continue
        found[keyid] = (path, signer)
    if len(found) < role.threshold:
        raise FleetError(
            f"rotation needs {role.threshold} of the current root keys, {len(found)} given (--root-key){same}"
        )
    return [signer for _, signer in list(found.values())[: role.threshold]]


def _retire(path: Path, tag: str) -> None:
    retired = path.parent / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    path.replace(retired / f"{path.stem}-{tag}.pem")


def _new_root_keys(root: Root, new_keys: int, threshold: int) -> tuple[list[CryptoSigner], NewKeys]:
    count = new_keys or len(root.roles["root"].keyids)
    wanted = threshold or root.roles["root"].threshold
    if not 1 <= wanted <= count:
        raise FleetError(f"--threshold must be between 1 and --new-keys ({count})")
    made = [generate_key() for _ in range(count)]
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    for _, signer in made:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = wanted
    return [signer for _, signer in made], {f"root-{i + 1}.pem": pem for i, (pem, _) in enumerate(made)}


def _new_online_key(root: Root, role: str) -> tuple[list[CryptoSigner], NewKeys]:
    pem, signer = generate_key()
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    root.add_key(signer.public_key, role)
    return [signer], {f"{role}.pem": pem}


def _verify(old: Root, md: Metadata[Root]) -> None:
    """The checks a box makes before it trusts the new root: a threshold of the old root's
    keys and of the new root's own. Anything less is refused before a file is written."""
    for name, trusted in (("current", old), ("new", md.signed)):
        try:
            trusted.verify_delegate("root", md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise FleetError(f"root v{md.signed.version} would not verify with the {name} root keys: {exc}") from None


def _swap_key_files(keys: Path, role: str, new: NewKeys, tag: str) -> None:
    """Only once the new root verifies: the old key files retire, the new ones take their names."""
    for old in sorted(keys.glob("root-*.pem")) if role == "root" else [keys / f"{role}.pem"]:
        _retire(old, tag)
    for name, pem in new.items():
        write_private(keys / name, pem)


def rotate(
    repo: FleetRepo, role: str, *, root_keys: list[Path] | None = None, new_keys: int = 0, threshold: int = 0,
    now: datetime | None = None,
) -> int:  # fmt: skip
    """Rotate `role`'s keys; returns the new root version."""
    if role not in ("root", *ONLINE):
        raise FleetError(f"{role}: not a role (root, targets, snapshot, timestamp)")
    now = now or datetime.now(UTC)
    old: Root = repo.load("root").signed
    root: Root = repo.load("root").signed
    old_signers = _root_signers(repo, root, root_keys or [])
    root.version += 1
    root.expires = (now + timedelta(days=repo.settings.expiry_days("root"))).replace(microsecond=0)
    if role == "root":
        new_signers, new_files = _new_root_keys(root, new_keys, threshold)
    else:
        new_signers, new_files = _new_online_key(root, role)
    md = Metadata(root)
    for signer in old_signers + (new_signers if role == "root" else []):
        md.sign(signer, append=True)
    _verify(old, md)
    # The rotated role is re-signed at once with its new key (a new version of it); all
    # of it is signed before anything is written.
    chain = _resign_chain(repo, role, now)
    repo.sign_chain(chain, keys=None if role == "root" else {role: new_signers[0]})
    write_json(md, repo.meta_dir / f"{root.version}.root.json")
    _swap_key_files(repo.fleet / "keys", role, new_files, f"v{root.version - 1}")
    write_json(md, repo.meta_dir / "root.json")
    repo.write_chain(chain)
    return root.version


def _resign_chain(repo: FleetRepo, role: str, now: datetime) -> list[Metadata[Any]]:
    if role == "targets":
        return repo.targets_chain(repo.load("targets").signed, now)
    if role == "snapshot":
        return repo.snapshot_chain(now, repo.load("targets").signed.version)
    if role == "timestamp":
        return [repo.timestamp_md(now, repo.load("snapshot").signed.version)]
    return []
