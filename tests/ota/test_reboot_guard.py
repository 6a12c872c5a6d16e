"""The OTA reboot guard speaks the alarm engine's states (no imports of the gateway)."""

import pytest

from appliance.core.vocab import AlarmState, Priority
from ota.service import blocking_alarm

NOT_IDLE = [s for s in AlarmState if s is not AlarmState.INACTIVE]


@pytest.mark.parametrize("state", NOT_IDLE)
@pytest.mark.parametrize("priority", [Priority.HIGH, Priority.MEDIUM])
def test_a_high_or_medium_alarm_in_any_state_but_inactive_blocks(state: AlarmState, priority: Priority):
    assert blocking_alarm([{"priority": str(priority), "state": state.value}])


@pytest.mark.parametrize("priority", [Priority.HIGH, Priority.MEDIUM])
def test_an_inactive_alarm_does_not_block(priority: Priority):
    # An ended alarm is "inactive" in the engine ("cleared" is an alarm event, not a state).
    assert not blocking_alarm([{"priority": priority.value, "state": "inactive"}])


@pytest.mark.parametrize("state", list(AlarmState))
def test_a_low_alarm_never_blocks(state: AlarmState):
    assert not blocking_alarm([{"priority": "low", "state": state.value}])


def test_a_state_this_version_does_not_know_blocks():
    assert blocking_alarm([{"priority": "high", "state": "smouldering"}])
