"""HL7 escape sequences: the fast unescape reads exactly as the character walk it replaced."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.hl7.message import Delimiters, unescape
from tests.timing import best_of

D = Delimiters()
HEX = "0123456789abcdefABCDEF"


def reference(text: str, d: Delimiters) -> str:
    """Escape sequences read one at a time, left to right (HL7 v2.x §2.7)."""
    out: list[str] = []
    i = 0
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape, ".br": "\n"}
    while i < len(text):
        end = text.find(d.escape, i + 1) if text[i] == d.escape else -1
        if end < 0:
            out.append(text[i])
            i += 1
            continue
        seq = text[i + 1 : end]
        if seq in simple:
            out.append(simple[seq])
        elif (
            len(seq) >= 3
            and seq[0] == "X"
            and len(seq) % 2 == 1
            and all(c in "0123456789abcdefABCDEF" for c in seq[1:])
        ):
            out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
        else:
            out.append(text[i : end + 1])
        i = end + 1
    return "".join(out)


pieces = st.sampled_from(
    [
        "\\F\\",
        "\\S\\",
        "\\T\\",
        "\\R\\",
        "\\E\\",
        "\\.br\\",
        "\\X41\\",
        "\\X0D0A\\",
        "\\Z\\",
        "\\",
        "\\\\",
        "a",
        "bc",
        "X",
        "F",
        "é",
        "",
    ]
)


@given(st.lists(pieces, max_size=40).map("".join))
def test_unescape_reads_as_the_character_walk(text: str) -> None:
    assert unescape(text, D) == reference(text, D)


@given(st.text(alphabet="ab\\FSTRX0E.r", max_size=60))
def test_unescape_reads_as_the_character_walk_for_any_text(text: str) -> None:
    assert unescape(text, D) == reference(text, D)


def test_a_field_of_escapes_costs_far_less_than_walking_it() -> None:
    # The character walk (the reference above) is the baseline, in the same run.
    hostile = "\\F\\" * 20_000

    assert unescape(hostile, D) == "|" * 20_000
    assert best_of(lambda: unescape(hostile, D)) < best_of(lambda: reference(hostile, D)) / 3
