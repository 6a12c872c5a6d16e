"""How much of a release a box would have to fetch with RAUC's adaptive updates.

The agent downloads the whole bundle (bookworm's RAUC 1.8, this bench host's, cannot
stream; the image's trixie RAUC 1.13 can, not used yet); adaptive updates
(block-hash-index) save downloads only when RAUC streams the bundle over HTTP range
requests. This tool measures what streaming + adaptive would fetch for a real change,
so the saving is known before the agent streams (README, "Smaller downloads"):

1. unpack the released rootfs (the image's squashfs), rebuild it unchanged with the
   image's own mksquashfs options (the slot the box runs: A), apply the change (one
   Debian package's files, `dpkg-deb -x`) and rebuild (the new slot image: B);
2. model RAUC's block-hash-index: B's 4 KiB blocks whose SHA-256 is found anywhere in
   A are copied locally, the others are read from the bundle;
3. a streamed bundle is read through its own squashfs (RAUC's `rauc bundle`: mksquashfs
   defaults, 128 KiB blocks), so each needed 4 KiB block costs the 128 KiB bundle block
   holding it: the fetched bytes are those bundle blocks (upper bound: they are stored
   uncompressed when xz data does not shrink) plus the dm-verity hash tree over them.
The full bundle's size is the real `rauc bundle` output. Nothing here talks to a box.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

__all__ = ["Delta", "adaptive_fetch", "block_hashes", "main"]

BLOCK: Final = 4096  # RAUC's block-hash-index chunk
BUNDLE_BLOCK: Final = 128 * 1024  # mksquashfs' default block size, as `rauc bundle` runs it
VERITY_FANOUT: Final = BLOCK // 32  # SHA-256 hashes per 4 KiB verity hash block
# image/build's own options (keep in step with it)
MKSQUASHFS: Final = ("-noappend", "-comp", "xz", "-quiet", "-wildcards", "-e", "proc/*", "sys/*", "dev/*",
                     "run/*", "tmp/*")  # fmt: skip


def block_hashes(path: Path) -> list[bytes]:
    out = []
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            out.append(hashlib.sha256(block.ljust(BLOCK, b"\0")).digest())
    return out


@dataclass(frozen=True, slots=True)
class Delta:
    image_bytes: int  # the new slot image
    changed_blocks: int  # 4 KiB blocks not found in the running slot
    changed_bytes: int
    fetched_bytes: int  # bundle blocks streaming would read, + verity hashes
    noise_blocks: int  # blocks that differ between two builds of the same tree


def adaptive_fetch(old: Path, new: Path, noise: Path | None = None) -> Delta:
    have = set(block_hashes(old))
    hashes = block_hashes(new)
    needed = [i for i, h in enumerate(hashes) if h not in have]
    bundle_blocks = {i * BLOCK // BUNDLE_BLOCK for i in needed}
    data = len(bundle_blocks) * BUNDLE_BLOCK
    verity = -(-data // (BLOCK * VERITY_FANOUT)) * BLOCK  # leaf hash blocks; upper levels are few
    noise_blocks = sum(h not in have for h in block_hashes(noise)) if noise is not None else 0
    return Delta(new.stat().st_size, len(needed), len(needed) * BLOCK, data + verity, noise_blocks)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def build_pair(rootfs: Path, deb: Path, work: Path) -> tuple[Path, Path, Path]:
    """(A, A again, B): the unchanged tree built twice, and with the package's files."""
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    _run("unsquashfs", "-q", "-d", str(tree), str(rootfs))
    images = []
    for name in ("a.sqfs", "a2.sqfs"):
        _run("mksquashfs", str(tree), str(work / name), *MKSQUASHFS)
        images.append(work / name)
    _run("dpkg-deb", "-x", str(deb), str(tree))
    _run("mksquashfs", str(tree), str(work / "b.sqfs"), *MKSQUASHFS)
    shutil.rmtree(tree)
    return images[0], images[1], work / "b.sqfs"


def bundle_size(image: Path, work: Path, signing: Path, compatible: str) -> int:
    content = work / "bundle"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    shutil.copyfile(image, content / "rootfs.img")
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion=1.0.1\n\n[bundle]\nformat=verity\n\n"
        "[image.rootfs]\nfilename=rootfs.img\nadaptive=block-hash-index\n"
    )
    out = work / "new.raucb"
    out.unlink(missing_ok=True)
    _run("rauc", "bundle", f"--cert={signing / 'signing.pem'}", f"--key={signing / 'signing.key'}",
         f"--keyring={signing / 'ca.pem'}", str(content), str(out))  # fmt: skip
    shutil.rmtree(content)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.delta_measure", description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", required=True, type=Path, help="the released rootfs.sqfs (image/build's out/)")
    ap.add_argument("--deb", required=True, type=Path, help="the one package that changes (a .deb)")
    ap.add_argument("--work", required=True, type=Path, help="scratch directory (a few GB)")
    ap.add_argument("--signing", type=Path, default=None, help="RAUC signing PKI dir (default: a throwaway one)")
    args = ap.parse_args(argv)
    for path in (args.rootfs, args.deb):
        if not path.is_file():
            print(f"delta_measure: {path}: no such file", file=sys.stderr)
            return 2
    args.work.mkdir(parents=True, exist_ok=True)
    signing = args.signing
    if signing is None:
        from ota.pki import make_signing_pki

        signing = args.work / "pki"
        make_signing_pki(signing, "measure")
    a, a2, b = build_pair(args.rootfs, args.deb, args.work)
    delta = adaptive_fetch(a, b, noise=a2)
    full = bundle_size(b, args.work, signing, "bedside-gw-amd64")
    print(json.dumps({**asdict(delta), "full_bundle_bytes": full,
                      "fetched_share": round(delta.fetched_bytes / full, 4)}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
