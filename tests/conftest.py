from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses

# Playwright's sync API runs an event loop in the test thread; Django then refuses ORM calls in
# tests and fixtures unless told this is fine (test-only, see stack.md §6).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# What gives a test the database: pytest-django blocks every query of a test that asks for none of these.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `dbless` the tests that cannot reach the database (pytest-django would refuse their queries): they
    run the same on any database, so `make test`'s PostgreSQL + Redis pass leaves them to the SQLite one (a V8
    sandbox escape or a JMESPath mapping proves nothing more on PostgreSQL, and the suite must stay short)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        uses_database = item.get_closest_marker("django_db") or fixtures & (DATABASE_FIXTURES | {"live_server"})
        if not uses_database:
            item.add_marker(pytest.mark.dbless)


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not CHROMIUM:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium).")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }


@pytest.fixture(autouse=True)
def fresh_process_count() -> None:
    """The engine reads how many delivery processes the hub has at most every few seconds (engine/cluster.py): each
    test counts its own workers and settings."""
    from deliveries.engine import cluster

    cluster.forget()


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests save screenshots for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def source(db):
    from integrations.models import Source

    return Source.objects.create(name="Website", slug="website", write_key="wk_test_website")


def basic_auth(write_key: str, colon: bool = True) -> str:
    raw = f"{write_key}:" if colon else write_key
    return "Basic " + base64.b64encode(raw.encode()).decode()


@pytest.fixture
def marketer(django_user_model):
    """A staff user in the Marketer group (made by migration, restored after a flush)."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("mia", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    return user


@pytest.fixture
def marketer_client(marketer):
    """A test client logged in as the Marketer."""
    from django.test import Client

    client = Client()
    client.force_login(marketer)
    return client


@pytest.fixture
def destination(source):
    """A webhook destination fed by `source`, posting to a receiver nobody answers unless a test mocks it."""
    from integrations.models import Destination

    destination = Destination.objects.create(
        name="Welcome hook", slug="welcome-hook", vendor="webhook", config={"url": "https://hooks.example.com/in"}
    )
    destination.sources.add(source)
    return destination


@pytest.fixture
def sandbox():
    """The vendor sandbox on a free port, its faults drawn from a fixed seed so a run can be repeated."""
    from integrations.sandbox import Sandbox

    with Sandbox(port=0, seed=5) as running:
        yield running


@pytest.fixture
def sb(sandbox):
    """The sandbox, by the short name its own tests use."""
    return sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A keep-alive HTTP session, closed after the test."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """HTTP mocked with `responses`: a call nobody registered fails, and so does a registered one never made."""
    with responses.RequestsMock() as mock:
        yield mock
