"""The kill switch state, read afresh for every plan: a file overrides the configured state.

The file holds one word, ``active``, ``reducing`` or ``halted``. A missing file means the
configured state; a file that cannot be read or parsed means ``halted``: when in doubt, stop.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from rebalance_stream.operators.risk import KillSwitch

log = structlog.get_logger(__name__)


class KillSwitchReader:
    """A callable for ``check_risk``: the file's state when it exists, else the default."""

    def __init__(self, default: KillSwitch, path: Path | None = None) -> None:
        self._default = default
        self._path = path
        self._last: KillSwitch | None = None

    def __call__(self) -> KillSwitch:
        state = self._read()
        if state is not self._last:
            log.info("kill_switch_state", state=state.value, path=str(self._path))
            self._last = state
        return state

    def _read(self) -> KillSwitch:
        if self._path is None:
            return self._default
        try:
            text = self._path.read_text(encoding="utf-8").strip().lower()
        except FileNotFoundError:
            return self._default
        except OSError as exc:
            log.error("kill_switch_file_unreadable", path=str(self._path), error=str(exc))
            return KillSwitch.HALTED
        try:
            return KillSwitch(text)
        except ValueError:
            log.error("kill_switch_file_invalid", path=str(self._path), content=text[:40])
            return KillSwitch.HALTED
