"""The shared vocabularies: technical event kinds, alarm priorities and states, quality.

Each is an `enum.StrEnum`: a member is its string value, so JSON lines, MQTT payloads,
CBOR batches and CLI output carry exactly the strings they always did, and records
parsed back from those forms (plain strings) compare equal to the members.
"""

from __future__ import annotations

import enum

__all__ = ["AlarmEventState", "AlarmState", "Priority", "Quality", "TechnicalKind"]


class TechnicalKind(enum.StrEnum):
    """Every technical event kind the gateway emits; a rule may target any of them."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STALE = "stale"
    SENSOR_OFF = "sensor_off"
    LOW_BATTERY = "low_battery"
    BAD_FRAME = "bad_frame"
    CLOCK_SKEW = "clock_skew"
    WRONG_MODE = "wrong_mode"
    DRIVER_CRASHED = "driver_crashed"
    # A device session (an association with a monitor) was lost; ends on re-association.
    SESSION_LOST = "session_lost"
    # Raised by the store, the uplink and the alarm outputs.
    STORE_FILL = "store_fill"
    RECORDS_DROPPED = "records_dropped"
    UPLINK_DOWN = "uplink_down"
    OUTPUT_FAILURE = "output_failure"
    # Raised by the OTA agent: every lifecycle step, refusals, a deferred reboot,
    # a clock behind the persisted time floor.
    UPDATE = "update"
    UPDATE_REFUSED = "update_refused"
    UPDATE_DEFERRED = "update_deferred"
    # The gateway's own clock (appliance/core/clocksync.py) also raises CLOCK_UNSYNCED
    # until the kernel says the system clock is synchronised, and reports each step.
    CLOCK_UNSYNCED = "clock_unsynced"
    CLOCK_STEP = "clock_step"
    # The store's own failures (an unreadable file set aside, a write that failed:
    # disk full, I/O error), the event loop that carries the alarm path falling
    # behind, a device listener refusing connections, and a value judged invalid
    # (non-finite or outside the term's plausible range) persisting: IEC 60601-1-8's
    # invalid-measurement condition.
    STORE_CORRUPT = "store_corrupt"
    STORE_FAILURE = "store_failure"
    LOOP_LAG = "loop_lag"
    CONNECTION_REFUSED = "connection_refused"
    INVALID_VALUE = "invalid_value"
    # A device's message names another patient or bed than the registry's pairing
    # (HL7 PID-3 / PV1-3): its values are quarantined and kept out of the alarms.
    PATIENT_MISMATCH = "patient_mismatch"
    # The clinical plane (appliance/clinical/): an ADT message the census refused
    # (out of order, unknown patient, conflicting identifiers), a device whose
    # pairing the census ended (its patient was transferred or discharged: values
    # quarantined until re-paired), and a patient's consent changing.
    CENSUS_REFUSED = "census_refused"
    UNPAIRED_BY_CENSUS = "unpaired_by_census"
    CONSENT_CHANGED = "consent_changed"
    # The census server (FHIR poll) cannot be used: the census stays as it was.
    CENSUS_UNAVAILABLE = "census_unavailable"


class Priority(enum.StrEnum):
    """Alarm priority (IEC 60601-1-8), highest first."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlarmState(enum.StrEnum):
    """State of one alarm in the engine's state machine (rules.states holds the table).

    INACTIVE is the only idle state: PENDING is a condition waiting out its delay,
    the others are an alarm the bed is (or was, LATCHED) showing.
    """

    INACTIVE = "inactive"
    PENDING = "pending"
    ACTIVE = "active"
    AUDIO_PAUSED = "audio_paused"
    ACKNOWLEDGED = "acknowledged"
    LATCHED = "latched"


class AlarmEventState(enum.StrEnum):
    """The `state` of a published alarm event: a state entered, or CLEARED (the alarm
    went back to inactive) and ESCALATED (its priority was raised)."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    AUDIO_PAUSED = "audio_paused"
    LATCHED = "latched"
    CLEARED = "cleared"
    ESCALATED = "escalated"


class Quality(enum.StrEnum):
    """How far an observation's value may be trusted."""

    VALID = "valid"
    QUESTIONABLE = "questionable"
    INVALID = "invalid"
