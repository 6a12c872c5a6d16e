"""Pairing checks (appliance/pairing.py): known device, ids, one patient per bed — also
when two operators pair at the same moment (the registry's lock)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from appliance.pairing import PairingRefused, pair_device
from appliance.registry import Registry


def test_checks_name_the_problem(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.json")
    with pytest.raises(PairingRefused, match="did you mean 'masimo-1'"):
        pair_device(reg, "masimo-2", "ICU-1", None, ["masimo-1"])
    with pytest.raises(PairingRefused, match="bed 'ICU 1'"):
        pair_device(reg, "masimo-1", "ICU 1", None, ["masimo-1"])
    pair_device(reg, "a", "ICU-1", "P1")
    pair_device(reg, "b", "ICU-1", "P1")  # the same patient: fine
    with pytest.raises(PairingRefused, match="paired to patient P1"):
        pair_device(reg, "c", "ICU-1", "P2")
    assert [p.device_id for p in reg.list()] == ["a", "b"]


def test_concurrent_pairings_keep_one_patient_per_bed_and_a_valid_file(tmp_path: Path) -> None:
    reg_path = tmp_path / "r.json"
    refused: list[str] = []

    def pair(device: str, patient: str, bed: str) -> None:
        try:
            pair_device(Registry(reg_path), device, bed, patient)
        except PairingRefused:
            refused.append(device)

    for round_ in range(15):
        bed = f"RACE-{round_}"
        threads = [threading.Thread(target=pair, args=(f"d{i}-{round_}", f"P{i}", bed)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    json.loads(reg_path.read_text())  # never torn
    by_bed: dict[str, set[str | None]] = {}
    for p in Registry(reg_path).list():
        by_bed.setdefault(p.bed_id, set()).add(p.patient_id)
    assert all(len(patients) == 1 for patients in by_bed.values()), by_bed
    assert len(refused) == 15 * 3
