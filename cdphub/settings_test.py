"""Settings for the test suite: the embedded defaults, a data dir of its own, private URLs allowed."""

import os
from pathlib import Path

os.environ.setdefault("CDPHUB_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))
os.environ.setdefault("CDPHUB_ALLOW_PRIVATE_URLS", "1")

from cdphub.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests

# Tasks run in the caller unless a test starts a real worker process (which sets CDPHUB_Q_SYNC=0).
Q_CLUSTER = {**Q_CLUSTER, "sync": env_flag("CDPHUB_Q_SYNC", True)}  # noqa: F405

# Live-server threads must not keep connections open past a request (PostgreSQL cannot drop the test DB).
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# The management API's throttle is tested on its own (tests/deliveries/api/test_auth.py); elsewhere it stays away.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"user": "1000000/min", "anon": "1000000/min"},
}
