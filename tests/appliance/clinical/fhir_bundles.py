"""FHIR R4 searchset Bundles of in-progress Encounters, as a census server answers
`Encounter?status=in-progress&_include=Encounter:subject&_include=Encounter:location`."""

from __future__ import annotations

from typing import Any


def bundle(*stays: tuple[str, list[str], str], status: str = "in-progress") -> dict[str, Any]:
    """One Encounter per (encounter id, patient identifiers, bed name), with the Patient
    and Location resources included."""
    entries: list[dict[str, Any]] = []
    for enc, ids, bed in stays:
        pid, lid = f"p-{enc}", f"l-{enc}"
        entries.append({"resource": {
            "resourceType": "Encounter", "id": enc, "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"},
            "location": [{"location": {"reference": f"Location/{lid}"}, "status": "active"}],
        }, "search": {"mode": "match"}})  # fmt: skip
        entries.append({"resource": {
            "resourceType": "Patient", "id": pid,
            "identifier": [{"system": "urn:oid:1.2.3.4", "value": i} for i in ids],
        }, "search": {"mode": "include"}})  # fmt: skip
        entries.append({"resource": {
            "resourceType": "Location", "id": lid, "name": bed,
            "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                                         "code": "bd"}]},
        }, "search": {"mode": "include"}})  # fmt: skip
    return {"resourceType": "Bundle", "type": "searchset", "total": len(stays), "entry": entries}
