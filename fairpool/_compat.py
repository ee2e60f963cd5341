"""Importing eventlet without printing its deprecation banner on fairpool's behalf.

eventlet >= 0.37 warns at import (``EventletDeprecationWarning``, a 9-line
"Eventlet is deprecated" banner, attributed to the module whose import ran
it). When fairpool is what first imports eventlet, that banner would read as
fairpool's own warning, and under ``python -W error`` importing fairpool
would fail. An application that imports eventlet itself gets the banner from
its own import, once, as before.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

__all__ = ["import_eventlet_quietly"]

#: How eventlet's banner begins (a regular expression, matched from the message's start).
EVENTLET_BANNER = r"\s*Eventlet is deprecated"


def import_eventlet_quietly() -> types.ModuleType:
    """Return the ``eventlet`` module, importing it without its deprecation banner if fairpool is first.

    If eventlet is already imported, it is returned as it is: whatever it
    printed was the application's own import. Otherwise it is imported with
    one warning filter added for the duration of the import, which ignores
    eventlet's banner and nothing else: any other warning raised while
    eventlet is imported is shown (or raised) as the application's warning
    filters say.
    """
    module = sys.modules.get("eventlet")
    if module is not None:
        return module
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=EVENTLET_BANNER)
        return importlib.import_module("eventlet")
