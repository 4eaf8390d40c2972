from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integrations.sandbox.server import Sandbox, declared_settings, discover


class Command(BaseCommand):
    help = (
        "Serve the vendor sandbox (a fake of each vendor in integrations/sandbox, and a webhook sink) on one port, "
        "for the demo, end-to-end tests and benchmarks."
    )
    requires_system_checks: list[str] = []  # no database: everything lives in memory

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
        # One flag per scalar setting the server or a fake declares: marketo_rate_limit is --marketo-rate-limit.
        for name, setting in declared_settings(discover()).items():
            if setting.flag is not None:
                flag = "--" + name.replace("_", "-")
                parser.add_argument(flag, dest=name, type=setting.flag, default=None, help=setting.help)

    def handle(self, *args: Any, **options: Any) -> None:
        settings = {name: options[name] for name in declared_settings(discover()) if options.get(name) is not None}
        try:
            sandbox = Sandbox(options["host"], options["port"], **settings)
            sandbox.start()
        except (ValueError, OSError) as exc:
            raise CommandError(f"The sandbox cannot start: {exc}") from exc
        stopping = threading.Event()
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
        links = sandbox.links()
        bases = [f"{label} {links[name]}" for fake in sandbox.fakes.values() for name, label in fake.banner.items()]
        self.stdout.write("  ".join([f"cdphub sandbox: {sandbox.url}", *bases, f"control {links['control']}"]))
        self.stdout.flush()
        while not stopping.wait(0.5):
            pass
        sandbox.stop()
        self.stdout.write("cdphub sandbox: stopped")
