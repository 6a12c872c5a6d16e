"""The NTP client's configuration from the site config's [time] table: the timesyncd
drop-in `bedside timesync` renders (the site's servers, never a fallback pool), what it
says in the journal, and that a bad value is one line naming the key."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from appliance.ntp import cmd_timesync, render, summary
from appliance.sections import TimeSettings

BED = '[gateway]\nbed_id = "ICU-1"\nregistry_path = "{reg}"\n'


def _config(tmp_path: Path, extra: str) -> str:
    return BED.format(reg=tmp_path / "r.json") + extra


def _lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_the_drop_in_names_the_sites_servers_in_order_and_no_fallback(tmp_path: Path) -> None:
    text = _config(tmp_path, '[time]\nntp_servers = ["10.20.0.5", "ntp.hospital.example", "fd00::123"]\n')
    drop_in = render(parse_config(text, "g.toml").time)
    assert "[Time]\n" in drop_in
    assert _lines(drop_in) == {"NTP": "10.20.0.5 ntp.hospital.example fd00::123", "FallbackNTP": ""}


def test_no_servers_means_none_at_all_and_says_so(tmp_path: Path) -> None:
    time = parse_config(_config(tmp_path, ""), "g.toml").time
    assert time == TimeSettings()
    assert _lines(render(time)) == {"NTP": "", "FallbackNTP": ""}  # not Debian's pool either
    assert "clock-unsynced alarm stays up" in summary(time)
    assert summary(TimeSettings(("10.20.0.5",))) == "NTP servers 10.20.0.5 (time.ntp_servers)"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ('"10.20.0.5"', "time.ntp_servers"),  # not a list
        ('["10.20.0.5", "ntp server"]', "time.ntp_servers[1]"),  # a space would split it in two
        ('["a.example\\nFallbackNTP=pool.example"]', "time.ntp_servers[0]"),  # nor a second key
        ('["-bad.example"]', "time.ntp_servers[0]"),
        # Python's ip_address takes anything after "%" as an IPv6 zone: a newline, a key.
        ('["fe80::1%x\\n[Time]\\nNTP=203.0.113.66"]', "time.ntp_servers[0]"),
        ('["fe80::1%eth 0"]', "time.ntp_servers[0]"),
        ('["10.20.0.5", "10.20.0.5"]', "time.ntp_servers[1]"),
        ('["a", "b", "c", "d", "e", "f", "g", "h", "i"]', "time.ntp_servers"),
        ("[1]", "time.ntp_servers"),
    ],
)
def test_a_bad_server_is_one_line_naming_the_key(tmp_path: Path, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(tmp_path, f"[time]\nntp_servers = {value}\n"), "g.toml")
    assert f"g.toml: {key}:" in str(err.value) and "\n" not in str(err.value)


def test_unknown_time_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"time\.ntp_server: unknown key"):
        parse_config(_config(tmp_path, '[time]\nntp_server = ["10.20.0.5"]\n'), "g.toml")


def _args(config: Path, out: Path, apply: bool) -> argparse.Namespace:
    return argparse.Namespace(config=str(config), out=str(out), apply=apply)


def test_apply_writes_the_drop_in_for_timesyncd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(_config(tmp_path, '[time]\nntp_servers = ["10.20.0.5"]\n'))
    out = tmp_path / "run" / "timesyncd.conf.d" / "bedside.conf"
    assert cmd_timesync(_args(config, out, apply=True)) == 0
    assert _lines(out.read_text())["NTP"] == "10.20.0.5"
    assert out.stat().st_mode & 0o777 == 0o644  # timesyncd runs as its own user
    assert [p.name for p in out.parent.iterdir()] == ["bedside.conf"]  # no temporary file left
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NTP servers 10.20.0.5" in err


def test_a_bad_site_config_writes_no_servers_and_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    out = tmp_path / "bedside.conf"
    config.write_text(_config(tmp_path, '[time]\nntp_servers = ["10.20.0.5"]\n'))
    assert cmd_timesync(_args(config, out, apply=True)) == 0
    config.write_text(_config(tmp_path, '[time]\nntp_servers = ["ntp server"]\n'))
    assert cmd_timesync(_args(config, out, apply=True)) == 2
    assert _lines(out.read_text()) == {"NTP": "", "FallbackNTP": ""}  # never the last boot's servers
    err = capsys.readouterr().err.splitlines()
    assert any("time.ntp_servers[0]" in line for line in err)
    assert "Traceback" not in "\n".join(err)


def test_without_apply_it_prints_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(_config(tmp_path, '[time]\nntp_servers = ["ntp.hospital.example"]\n'))
    assert cmd_timesync(_args(config, tmp_path / "bedside.conf", apply=False)) == 0
    assert "NTP=ntp.hospital.example\n" in capsys.readouterr().out
    assert not (tmp_path / "bedside.conf").exists()


def test_an_interface_zone_passes_and_render_refuses_what_could_start_a_key(tmp_path: Path) -> None:
    cfg = parse_config(_config(tmp_path, '[time]\nntp_servers = ["fe80::1%eth0"]\n'), "g.toml")
    assert "NTP=fe80::1%eth0\n" in render(cfg.time)
    with pytest.raises(ValueError, match="is not one name"):
        render(replace(cfg.time, ntp_servers=("a.example\nFallbackNTP=x",)))
