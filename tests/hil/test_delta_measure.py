"""The adaptive-update model behind the "Smaller downloads" figures: blocks found in the
running slot are not fetched; each missing 4 KiB block costs its 128 KiB bundle block."""

import os
from pathlib import Path

from hil.delta_measure import BLOCK, BUNDLE_BLOCK, adaptive_fetch


def test_only_blocks_missing_from_the_running_slot_are_fetched(tmp_path: Path):
    old = tmp_path / "a.img"
    old.write_bytes(os.urandom(64 * BLOCK))
    same = adaptive_fetch(old, old)
    assert same.changed_blocks == 0 and same.fetched_bytes == 0
    data = bytearray(old.read_bytes())
    data[3 * BLOCK] ^= 1  # two changed blocks in one 128 KiB bundle block,
    data[5 * BLOCK] ^= 1
    data[40 * BLOCK] ^= 1  # one in the next
    new = tmp_path / "b.img"
    new.write_bytes(bytes(data))
    delta = adaptive_fetch(old, new)
    assert delta.changed_blocks == 3 and delta.changed_bytes == 3 * BLOCK
    assert delta.fetched_bytes == 2 * BUNDLE_BLOCK + BLOCK  # + one verity hash block
    shifted = tmp_path / "c.img"
    shifted.write_bytes(os.urandom(BLOCK) + old.read_bytes())  # content moved by a block: found elsewhere
    assert adaptive_fetch(old, shifted).changed_blocks == 1
