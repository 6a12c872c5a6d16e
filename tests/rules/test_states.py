import pytest

from rules.states import TRANSITIONS, AlarmState, Input, next_state

S, In = AlarmState, Input


@pytest.mark.parametrize(
    ("state", "inp", "expected"),
    [
        (S.INACTIVE, In.COND_ON, S.PENDING),
        (S.INACTIVE, In.ACK, S.INACTIVE),
        (S.INACTIVE, In.COND_OFF, S.INACTIVE),
        (S.PENDING, In.DELAY_ELAPSED, S.ACTIVE),
        (S.PENDING, In.COND_OFF, S.INACTIVE),
        (S.PENDING, In.COND_OFF_LATCHING, S.INACTIVE),
        (S.PENDING, In.ACK, S.PENDING),
        (S.ACTIVE, In.ACK, S.ACKNOWLEDGED),
        (S.ACTIVE, In.PAUSE, S.AUDIO_PAUSED),
        (S.ACTIVE, In.COND_OFF, S.INACTIVE),
        (S.ACTIVE, In.COND_OFF_LATCHING, S.LATCHED),
        (S.ACTIVE, In.COND_ON, S.ACTIVE),
        (S.AUDIO_PAUSED, In.PAUSE_ELAPSED, S.ACTIVE),
        (S.AUDIO_PAUSED, In.ACK, S.ACKNOWLEDGED),
        (S.AUDIO_PAUSED, In.COND_OFF_LATCHING, S.LATCHED),
        (S.AUDIO_PAUSED, In.COND_OFF, S.INACTIVE),
        (S.ACKNOWLEDGED, In.COND_OFF, S.INACTIVE),
        (S.ACKNOWLEDGED, In.COND_OFF_LATCHING, S.INACTIVE),
        (S.ACKNOWLEDGED, In.PAUSE, S.ACKNOWLEDGED),
        (S.LATCHED, In.ACK, S.INACTIVE),
        (S.LATCHED, In.COND_ON, S.ACTIVE),
        (S.LATCHED, In.COND_OFF_LATCHING, S.LATCHED),
        (S.LATCHED, In.PAUSE_ELAPSED, S.LATCHED),
    ],
)
def test_transition_table(state, inp, expected):
    assert next_state(state, inp) is expected


def test_every_state_is_reachable_from_inactive():
    reachable = {S.INACTIVE}
    frontier = [S.INACTIVE]
    while frontier:
        s = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is s and dst not in reachable:
                reachable.add(dst)
                frontier.append(dst)
    assert reachable == set(S)
