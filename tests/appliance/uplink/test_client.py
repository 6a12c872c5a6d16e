import time

from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.queue.records import encode_batch
from appliance.queue.store import RecordClass
from appliance.uplink.client import Uplink, UplinkSettings
from tests.appliance.queue.test_queue import ALARM
from tests.appliance.queue.test_records import observation


def setup(tmp_path, live_rows: int):
    q = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key")), lambda e: None)
    put = q.store.put
    for i in range(20):
        put(RecordClass.TELEMETRY, [(encode_batch([observation(i)]), 1)], durable=False)
    time.sleep(0.01)
    connected_ms = int(time.time() * 1000)
    time.sleep(0.01)
    for i in range(live_rows):
        put(RecordClass.TELEMETRY, [(encode_batch([observation(100 + i)]), 1)], durable=False)
    put(RecordClass.ALARM, [(encode_batch([ALARM]), 1)], durable=True)
    uplink = Uplink(UplinkSettings("h", 1, "h", "gw", "a", "b", "c"), q, lambda e: None)
    return q, uplink, connected_ms


async def test_alarms_first_then_live_with_a_guaranteed_backlog_share(tmp_path):
    q, uplink, connected_ms = setup(tmp_path, live_rows=20)
    rows = await uplink._next_rows(9, connected_ms)
    classes = [cls for _, cls, _, _ in rows]
    assert classes[0] is RecordClass.ALARM
    live = [r for r in rows[1:] if r[2] >= connected_ms]
    backlog = [r for r in rows[1:] if r[2] < connected_ms]
    assert len(rows) == 9 and len(backlog) == 2 and len(live) == 6  # 25 % of the 8 left for the backlog
    q.close()


async def test_backlog_takes_the_whole_window_when_there_is_little_live_data(tmp_path):
    q, uplink, connected_ms = setup(tmp_path, live_rows=1)
    rows = await uplink._next_rows(9, connected_ms)
    assert len(rows) == 9
    assert len([r for r in rows if r[1] is RecordClass.TELEMETRY and r[2] < connected_ms]) == 7
    q.close()
