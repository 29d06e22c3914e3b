"""The kill switch file overrides the configured state while the service runs."""

from __future__ import annotations

from pathlib import Path

from rebalance_stream.operators.risk import KillSwitch
from rebalance_stream.streams.kill_switch import KillSwitchReader


def test_kill_switch_reader_without_file_gives_the_default() -> None:
    assert KillSwitchReader(KillSwitch.REDUCING)() is KillSwitch.REDUCING


def test_kill_switch_reader_file_changes_are_seen_on_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "kill-switch"
    reader = KillSwitchReader(KillSwitch.ACTIVE, path)

    before = reader()
    path.write_text("halted\n", encoding="utf-8")
    during = reader()
    path.write_text("Reducing", encoding="utf-8")
    reducing = reader()
    path.unlink()
    after = reader()

    assert (before, during, reducing, after) == (
        KillSwitch.ACTIVE,
        KillSwitch.HALTED,
        KillSwitch.REDUCING,
        KillSwitch.ACTIVE,
    )


def test_kill_switch_reader_unparseable_file_halts(tmp_path: Path) -> None:
    path = tmp_path / "kill-switch"
    path.write_text("maybe", encoding="utf-8")

    assert KillSwitchReader(KillSwitch.ACTIVE, path)() is KillSwitch.HALTED


def test_kill_switch_reader_unreadable_path_halts(tmp_path: Path) -> None:
    assert KillSwitchReader(KillSwitch.ACTIVE, tmp_path)() is KillSwitch.HALTED
