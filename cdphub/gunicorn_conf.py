"""How `make run` (and the benchmarks) serve the hub: gunicorn, gthread workers (keep-alive clients)."""

import os

bind = os.environ.get("CDPHUB_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("CDPHUB_WEB_WORKERS", "2"))
threads = int(os.environ.get("CDPHUB_WEB_THREADS", "4"))
max_requests = 2000
max_requests_jitter = 200
timeout = 30
keepalive = 5
accesslog = os.environ.get("CDPHUB_ACCESS_LOG") or None
wsgi_app = "cdphub.wsgi:application"
