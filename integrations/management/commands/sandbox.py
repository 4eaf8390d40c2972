from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integrations.sandbox import Sandbox

# flag -> (setting, type, help); the setting names are those of Sandbox(**settings) and POST /_sandbox/config.
FLAGS: dict[str, tuple[str, type, str]] = {
    "--error-rate": ("error_rate", float, "share of REST calls answered with a transient server error (0..1)"),
    "--rate-429": ("rate_429", float, "share of REST calls answered as throttled (0..1)"),
    "--retry-after": ("retry_after", int, "seconds in Retry-After headers"),
    "--latency-ms": ("latency_ms", float, "delay added to every request"),
    "--token-lifetime": ("token_lifetime", int, "SFMC expires_in"),
    "--marketo-token-lifetime": ("marketo_token_lifetime", int, "Marketo token lifespan in seconds"),
    "--marketo-rate-limit": ("marketo_rate_limit", int, "Marketo calls per window before 606"),
    "--marketo-rate-window": ("marketo_rate_window", float, "seconds of Marketo's sliding rate window"),
    "--marketo-concurrency": ("marketo_concurrency", int, "Marketo calls in flight before 615"),
    "--marketo-daily-quota": ("marketo_daily_quota", int, "Marketo calls per day before 607"),
    "--sfmc-10006-rate": ("sfmc_10006_rate", float, "share of rowset calls answered 10006 (transient)"),
    "--seed": ("seed", int, "seed of the fault random generator, for repeatable runs"),
}


class Command(BaseCommand):
    help = (
        "Serve fakes of SFMC and Marketo and a webhook sink on one port, for the demo, end-to-end tests and benchmarks."
    )
    requires_system_checks: list[str] = []  # no database: everything lives in memory

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
        for flag, (name, kind, text) in FLAGS.items():
            parser.add_argument(flag, dest=name, type=kind, default=None, help=text)

    def handle(self, *args: Any, **options: Any) -> None:
        settings = {name: options[name] for name, _, _ in FLAGS.values() if options[name] is not None}
        try:
            sandbox = Sandbox(options["host"], options["port"], **settings)
            sandbox.start()
        except (ValueError, OSError) as exc:
            raise CommandError(f"The sandbox cannot start: {exc}") from exc
        stopping = threading.Event()
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
        links = sandbox.links()
        self.stdout.write(
            f"cdphub sandbox: {sandbox.url}  SFMC auth base {links['sfmc_auth_base']}  "
            f"SFMC REST base {links['sfmc_rest_base']}  Marketo base {links['marketo_base']}  "
            f"sink {links['sink']}  control {links['control']}"
        )
        self.stdout.flush()
        while not stopping.wait(0.5):
            pass
        sandbox.stop()
        self.stdout.write("cdphub sandbox: stopped")
