import pytest

from appliance.registry import Registry, RegistryError


def test_pair_list_unpair_and_refresh(tmp_path):
    path = tmp_path / "reg" / "registry.json"
    reg = Registry(path)
    assert reg.list() == [] and reg.get("m1") is None
    reg.pair("m1", "ICU-1", "P1")
    reg.pair("m1", "ICU-2", None)  # re-pair replaces
    reg.pair("n1", "ICU-3", "P3")
    assert [(p.device_id, p.bed_id, p.patient_id) for p in reg.list()] == [
        ("m1", "ICU-2", None),
        ("n1", "ICU-3", "P3"),
    ]
    reader = Registry(path)
    assert reader.refresh() is True
    assert reader.get("n1").patient_id == "P3"  # type: ignore[union-attr]
    assert reader.refresh() is False  # unchanged file: no re-read
    assert reg.unpair("n1") and not reg.unpair("n1")


def test_corrupt_file_is_a_clear_error_and_refresh_keeps_the_last_snapshot(tmp_path):
    path = tmp_path / "registry.json"
    reg = Registry(path)
    reg.pair("m1", "ICU-1", "P1")
    assert reg.refresh()
    path.write_text("{ half written")
    with pytest.raises(RegistryError, match="not a registry file"):
        reg.list()
    assert reg.refresh() is False
    assert reg.get("m1") is not None
