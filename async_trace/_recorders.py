"""The origin recorder, chosen once by version: the unwind hook (3.12+) or done callbacks (3.10/3.11).

Both record an exception's origin as it leaves the raising task while
``record_origins`` is on (the default), and add eager notes there: 3.12+
from a ``sys.monitoring`` callback (:mod:`._record_unwind`), 3.10/3.11, which
have no such hook short of ``sys.settrace``, from a done callback on each
task and executor future (:mod:`._record_callbacks`). With it off, origins
are found when printed.
"""

from __future__ import annotations

from . import _record_callbacks, _record_unwind
from ._compat import HAS_MONITORING
from ._config import settings

__all__: list[str] = []


def apply(active: bool) -> None:
    """Bring the recorder in line with the settings; ``active``: whether the display hooks are on."""
    if HAS_MONITORING:
        if active and settings.record_origins:
            _record_unwind.install()
        else:
            _record_unwind.uninstall()
    else:
        _record_callbacks.watch(active and settings.eager_notes)
        _record_callbacks.watch_groups(active and settings.record_origins)
