import contextlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.intellivue import wire


@pytest.mark.parametrize(
    ("raw", "value", "special"),
    [
        (0xFF000258, 60.0, None),  # 600 x 10^-1
        (0x00000060, 96.0, None),
        (0xFFFFFFF1, -1.5, None),  # exponent -1, mantissa -15
        (0xFE00016F, 3.67, None),
        (0x02000003, 300.0, None),
        (0x007FFFFF, None, "nan"),
        (0x00800000, None, "nres"),
        (0x007FFFFE, None, "+inf"),
        (0x00800002, None, "-inf"),
        (0x00800001, None, "reserved"),
    ],
)
def test_float_type_values_and_special_values(raw, value, special):
    assert wire.decode_float(raw) == (value, special)


@given(st.integers(-99999, 99999), st.integers(0, 3))
def test_float_round_trip(mantissa, decimals):
    value = mantissa / 10**decimals
    assert wire.decode_float(wire.encode_float(value, decimals)) == (round(value, decimals), None)


def test_absolute_time_bcd_and_unset():
    assert wire.decode_abs_time(bytes.fromhex("2021042211472600")) == datetime(2021, 4, 22, 11, 47, 26)
    assert wire.decode_abs_time(b"\xff" * 8) is None
    assert wire.decode_abs_time(bytes.fromhex("2021139911472600")) is None  # month 13: not a date
    when = datetime(2026, 11, 22, 8, 5, 9, 120000)
    assert wire.decode_abs_time(wire.encode_abs_time(when)) == when


def test_association_request_matches_the_fact_sheet_layout():
    req = wire.association_request()
    assert len(req) == 238 and req[:2] == b"\x0d\xec"  # LI = 236 bytes follow
    assert req[2:16] == bytes.fromhex("05 08 13 01 00 16 01 02 80 00 14 02 00 02")
    assert bytes.fromhex("81 48 80 00 00 00 40 00 00 00") in req  # user data 72 bytes, MDDL_VERSION1
    profile = bytes.fromhex("00 01 00 28 80 00 00 00 00 00 09 C4 00 00 09 C4 00 00 03 E8 FF FF FF FF 60 00 00 00")
    assert profile in req
    assert bytes.fromhex("F0 01 00 08 80 00 00 00 00 00 00 00") in req  # PollProfileExt, NU_1SEC
    assert req.endswith(bytes(16))


def test_host_message_sizes_and_fields():
    result = wire.mds_create_result(0x0101, wire.MDS_OBJECT, 0x001DC200)
    assert result == bytes.fromhex("E1000002 0002 0014 0101 0001 000E 002100000000 001DC200 0D06 0000")
    single = wire.single_poll(7, 3, wire.NOM_MOC_VMS_MDS)
    assert len(single) == 36 and single[4:8] == bytes.fromhex("0001 001C") and single[24:28] == b"\x0c\x16\x00\x08"
    ext = wire.extended_poll(8, 4, wire.NOM_MOC_VMO_METRIC_NU)
    assert len(ext) == 40 and ext[24:26] == b"\xf1\x3b" and ext[-4:] == bytes(4)
    ext_pd = wire.extended_poll(8, 4, wire.NOM_MOC_VMO_METRIC_NU, period_rt=0x0003A980)
    assert len(ext_pd) == 48 and ext_pd.endswith(bytes.fromhex("0001 0008 F13E 0004 0003A980"))
    assert len(wire.release_request()) == 26 and wire.release_request()[:2] == b"\x09\x18"


def test_parses_the_monitors_association_accept():
    accept = bytes.fromhex(
        "0ece0508130100160102800014020002c1be3180a0808001010000a280a003000001a58030808001008102510100003080"
        "800100810c2a8648ce14020100000002010000000061803080020101a0806180a180060c2a8648ce1402010000000301"
        "0000a203020100a305a103020100be80288002010281488000000040000000000000000080000080000000000000000001"
        "002c000100288000000000000fa0000003e4000003e4ffffffff600000000001000cf00100088e000000000000000000"
        "0000000000000000000000000000000000"
    )
    assert wire.parse_message(accept) == wire.AssocAccept(min_poll_period_s=0.5)


def test_simple_spdus_and_unknown_ones():
    assert wire.parse_message(b"\x0c\x00") == wire.AssocRefuse()
    assert wire.parse_message(b"\x19\x2e" + bytes(46)) == wire.Abort()
    assert wire.parse_message(wire.release_request()) == wire.ReleaseRequest()
    assert wire.parse_message(wire.release_response()) == wire.ReleaseResponse()
    assert isinstance(wire.parse_message(b"\x42"), wire.OtherMessage)
    with pytest.raises(wire.MessageError):
        wire.parse_message(b"")


def test_a_lying_length_raises_instead_of_reading_past_the_end():
    reply = bytearray(bytes.fromhex("E1000002 0002 0020 0001 0007 001A 002100000000 F13B 0010 0001"))
    with pytest.raises(wire.MessageError):
        wire.parse_message(bytes(reply))


def test_attribute_list_is_bounded_by_its_length_not_its_count():
    raw = bytes.fromhex("0009 000C 0921 0002 8600 0950 0002 0102") + b"trailing"
    r = wire.Reader(raw)
    assert wire.parse_attributes(r) == {0x0921: b"\x86\x00", 0x0950: b"\x01\x02"}
    assert r.remaining == len(b"trailing")


@given(st.binary(max_size=300))
def test_fuzz_parse_message_raises_only_message_error(data):
    with contextlib.suppress(wire.MessageError):
        wire.parse_message(data)
