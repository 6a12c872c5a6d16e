"""`bedside devices release DEVICE`: a device's held quarantine, given to its patient.

An explicit operator action, done by the running gateway (control socket
command `release`): the device must be paired to the patient the census has in
its bed; only observations of that device at that bed received since the
patient arrived there (the census stay's `since_ms`) are released, each marked
`released`, with the patient and without the quarantine mark, and consent-gated
like any other. They go to the queue as telemetry (or withheld), never to the
alarm circuit: they are old news. Audited (`quarantine_released`) with the
operator (the control socket peer's uid and user name) and optional badge.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from appliance.core.errors import BedsideInputError

if TYPE_CHECKING:
    from appliance.clinical.plane import ClinicalPlane
    from appliance.queue.queue import RecordQueue

__all__ = ["RELEASED_FLAG", "ReleaseRefused", "release"]

RELEASED_FLAG: Final = "released"


class ReleaseRefused(BedsideInputError):
    """A release the pairing or the census does not support (one line)."""


async def release(
    plane: ClinicalPlane, queue: RecordQueue | None, req: dict[str, Any], uid: int | None
) -> dict[str, Any]:
    """The control socket's `release` command from the peer `uid` (the operator)."""
    from appliance.clinical.operator import badge_problem, operator_fields

    device_id, badge = req.get("device"), req.get("badge") or None
    if not isinstance(device_id, str) or not device_id:
        raise ReleaseRefused("release needs a device id")
    if problem := badge_problem(badge):
        raise ReleaseRefused(problem)
    if queue is None:
        raise ReleaseRefused("no store on this gateway ([queue] path): nothing is held")
    # The registry as the gateway last read it (every registry_poll_s): refreshing here would
    # hide a change from the gateway's own watch, which audits it and resets the devices.
    pairing = plane.registry.get(device_id)
    if pairing is None or pairing.patient_id is None:
        raise ReleaseRefused(f"device {device_id!r} is not paired to a patient; pair it first (bedside devices pair)")
    patient = plane.patient_for(pairing.bed_id, pairing.patient_id)
    stay = plane.census.at_bed(pairing.bed_id) if plane.census is not None else None
    if patient is None:
        raise ReleaseRefused(f"the census does not have patient {pairing.patient_id} in bed {pairing.bed_id}")
    since_ms = stay.since_ms if stay is not None else 0
    taken = await queue.take_held(device_id, pairing.bed_id, since_ms)
    for obs in taken:
        given = replace(obs, patient_id=patient, quarantine=False, flags=obs.flags | {RELEASED_FLAG})
        queue.offer(plane.gate(given))
    fields = {"device_id": device_id, "bed_id": pairing.bed_id, "patient_id": patient, "records": len(taken),
              "since_ms": since_ms, **operator_fields(uid, badge)}  # fmt: skip
    plane.audit("quarantine_released", fields)
    return {"ok": True, "released": len(taken), "patient": patient, "bed": pairing.bed_id}
