"""Call records in a real SQLite file: who called whom per dialect, the record of a
voice-agent call at hang-up, and the retention (at open and on a schedule)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from voxwire.protocols.events import CallStarted, MediaFormat
from voxwire.store.records import CallRecord, CallRecords, caller_ids, record_of

DAY = 86400.0
FMT = MediaFormat("mulaw", 8000)


def test_caller_ids_come_from_the_start_message_or_the_custom_parameters() -> None:
    telnyx = CallStarted("s", "c", FMT, metadata={"from": "+13125550100", "to": "+13125550199"})
    assert caller_ids(telnyx) == ("+13125550100", "+13125550199")
    twilio = CallStarted("s", "c", FMT, custom_parameters={"From": "+1555", "To": "+1666"})
    assert caller_ids(twilio) == ("+1555", "+1666")
    assert caller_ids(CallStarted("s", "c", FMT)) == (None, None)
    odd = CallStarted("s", "c", FMT, metadata={"from": 12, "to": "x" * 1000})
    assert caller_ids(odd) == (None, "x" * 256)  # not a string: none; bounded


def test_retention_deletes_old_records_at_open_and_on_schedule(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    path = tmp_path / "calls.db"

    async def main() -> None:
        records = CallRecords(path, retention_days=7, clock=lambda: now[0])
        assert records.purged == 0
        for age_days in (10, 8, 6, 1):
            end = now[0] - age_days * DAY
            await records.add(CallRecord(f"c{age_days}", "s", "twilio", end - 30, end, "x"))
        await records.aclose()
        # opened again: the two older than 7 days go
        records = CallRecords(path, retention_days=7, clock=lambda: now[0])
        assert records.purged == 2
        assert [r["call_id"] for r in records.query("SELECT call_id FROM calls ORDER BY id")] == [
            "c6",
            "c1",
        ]
        # two days later the schedule removes the 6-day-old one
        now[0] += 2 * DAY
        task = asyncio.ensure_future(records.run_retention(interval=0.05))
        for _ in range(100):
            if len(records.query("SELECT id FROM calls")) == 1:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        assert [r["call_id"] for r in records.query("SELECT call_id FROM calls ORDER BY id")] == [
            "c1"
        ]
        assert records.counts["purge"] >= 1
        await records.aclose()

    asyncio.run(main())
    with pytest.raises(ValueError, match="retention_days"):
        CallRecords(path, retention_days=0)


def test_a_record_that_cannot_be_written_is_counted_not_raised(tmp_path: Path) -> None:
    async def main() -> None:
        records = CallRecords(tmp_path / "calls.db")
        await records.add(CallRecord("c", "s", "twilio", 0.0, 1.0, "x"))
        # the table disappears under it
        records._executor.submit(records._conn.execute, "DROP TABLE calls").result()
        await records.add(CallRecord("c", "s", "twilio", 0.0, 1.0, "x"))
        assert records.counts["add"] == 1
        assert records.counts["add_failed"] == 1
        await records.aclose()

    asyncio.run(main())


def test_a_voice_agent_call_is_recorded_at_hang_up(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    pytest.importorskip("websockets", reason="the WebSocket server needs websockets")
    from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
    from voxwire.agents.server import agent_server
    from voxwire.aio.metrics import call_quality
    from voxwire.aio.session import Call
    from voxwire.aio.surface import CallSurface
    from voxwire.security import redact_digits
    from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
    from voxwire.sim import Turn, place_dialog, synthesize

    async def main() -> None:
        records = CallRecords(tmp_path / "calls.db")

        def on_end(call: CallSurface, result: AgentCallResult) -> None:
            assert isinstance(call, Call)
            record = record_of(
                call, result, text=redact_digits, quality=call_quality(call, 80.0, 0.0)
            )
            assert record is not None
            records.submit(record)

        agent = VoiceAgent(
            FakeStt(["my card is 4111 1111 1111 1111"]),
            FakeLlm(lambda m: "Thank you."),
            FakeTts(),
            on_end=on_end,
        )
        async with agent_server(agent, "telnyx") as url:
            turns = [Turn(synthesize("my card is four one one one", 8000))]
            await asyncio.wait_for(place_dialog(url, "telnyx", turns), 30)
            for _ in range(200):
                if records.counts["add"]:
                    break
                await asyncio.sleep(0.02)
        (row,) = records.query("SELECT * FROM calls")
        assert (row["protocol"], row["caller"], row["called"]) == (
            "telnyx",
            "+13125550100",
            "+13125550199",
        )
        assert row["outcome"] == "caller_hung_up"
        assert row["ended_at"] > row["started_at"] > 0
        assert (row["resumed"], row["connection"], row["turns"]) == (0, 1, 1)
        (turn,) = json.loads(row["turn_metrics"])
        assert turn["user_text"] == "my card is [digits]"  # redacted as in the logs
        assert turn["heard_text"] == "Thank you."
        assert turn["reply_latency"] > 0
        quality = json.loads(row["quality"])
        assert quality["loss_ratio"] == 0.0
        assert 4.0 < quality["mos"] <= 4.5
        assert json.loads(row["errors"]) == {}
        await records.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--echo", "--store", "sqlite:x.db"], "need a voice agent"),
        (["--echo", "--records", "calls.db"], "need a voice agent"),
        (["--agent", "demo", "--store", "postgres://db/x"], "cannot open the store"),
        (["--agent", "demo", "--records", "no/such/dir/c.db"], "cannot open the call records"),
    ],
)
def test_serve_refuses_state_options_it_cannot_honour(
    tmp_path: Path, options: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voxwire", "serve", "--protocol", "twilio", "--port", "0", *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert message in done.stderr
