"""`bedside run` with its store on a tiny, full tmpfs: held, said, and a clean stop."""

import signal

import pytest

from tests.appliance.queue.smallfs import fill, small_tmpfs
from tests.integration.helpers import gateway_toml, records, spawn, wait_until

pytestmark = pytest.mark.integration

RULES = (
    '[[rule]]\nid = "spo2-any"\nkind = "limit"\nmetric = "MDC_PULS_OXIM_SAT_O2"\nbelow = 101.0\npriority = "high"\n'
    '[[rule]]\nid = "store"\nkind = "technical"\nevent = "store_failure"\npriority = "medium"\n'
)


def test_sigterm_while_the_store_is_full_stops_cleanly_and_names_what_is_held(bench):
    tmp, procs = bench
    with small_tmpfs(tmp / "data", "2m") as data:
        (tmp / "rules.toml").write_text(RULES)
        queue = (
            f'[queue]\npath = "{data / "store.db"}"\nkey_path = "{data / "store.key"}"\n'
            f"commit_interval_ms = 50\nmax_bytes = {1024 * 1024}\n"
            f'[alarms]\nrules_path = "{tmp / "rules.toml"}"\n'
        )
        cfg = tmp / "gw.toml"
        cfg.write_text(gateway_toml(tmp, "ICU-3", sections=queue, device=("masimo-1", "masimo", "masimo0")))
        gateway = spawn("run", "--config", str(cfg))
        procs.append(gateway)
        procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--rate", "8"))
        out = tmp / "records.jsonl"
        assert wait_until(lambda: sum(r["type"] == "observation" for r in records(out)) >= 20, 30)

        fill(data)

        def failing() -> bool:
            return any(r.get("kind") == "store_failure" and r.get("active") for r in records(out))

        said = wait_until(failing, 20)
        # The store's failure is itself an alarm, and it reaches the (full) store's hold.
        alarmed = wait_until(lambda: any(r.get("rule_id") == "store" for r in records(out)), 5)
        assert gateway.poll() is None
        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(20)
        assert gateway.stderr is not None
        err = gateway.stderr.read().decode()
        assert code == 0, err
        assert "Traceback" not in err
        assert said and alarmed
        assert "held in memory are not stored" in err and " alarm, " in err
