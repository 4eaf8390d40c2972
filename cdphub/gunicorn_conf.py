"""How `make run` (and the benchmarks) serve the hub: gunicorn, gthread workers (keep-alive clients)."""

import os

bind = os.environ.get("CDPHUB_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("CDPHUB_WEB_WORKERS", "2"))
threads = int(os.environ.get("CDPHUB_WEB_THREADS", "4"))
# A restarted worker drops its keep-alive connections and the clients reconnect to the worker that is still
# up, which then serves nearly all of them on one core (a gthread worker never hands a connection over).
# So recycle rarely: every ~50,000 requests (0 = never), spread so the workers do not restart together.
max_requests = int(os.environ.get("CDPHUB_WEB_MAX_REQUESTS", "50000"))
max_requests_jitter = max_requests // 10
timeout = 30
keepalive = 5
accesslog = os.environ.get("CDPHUB_ACCESS_LOG") or None
wsgi_app = "cdphub.wsgi:application"
