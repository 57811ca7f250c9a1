"""Make the stand-in fixtures available to these tests.

Once ``tests/conftest.py`` imports :mod:`tests.fakes.fixtures`, its definitions win and this
file adds nothing (importing twice would start a second CA, IdP and Dovecot).
"""

from __future__ import annotations

import sys

if not hasattr(sys.modules.get("tests.conftest"), "idp"):
    from tests.fakes.fixtures import (  # noqa: F401 - fixtures are found by name
        dovecot,
        dovecot_exchange_like,
        fresh_idp,
        idp,
        test_ca,
        trust_test_ca,
    )
