"""An rq worker for the mail queue: ``python -m crane_notify_mail.worker``.

The ``mail`` plugin starts one itself (``StartWorker: true``, the default); a site may instead
(or as well) run workers of its own, on any host that reaches Redis and the SMTP server::

    CRANE_MAIL_REDIS_PASSWORD=... python -m crane_notify_mail.worker \\
        --redis-url redis://ctl:6379/0 --username cplugind --queue crane-mail
    python -m crane_notify_mail.worker --credentials-file /var/crane/bus/cplugind.json

The password is never a command-line argument (``ps`` shows those): it comes from
``$CRANE_MAIL_REDIS_PASSWORD`` or the credentials file. The worker runs rq's scheduler too, which
is what moves retried sends back to the queue when their delay is over. SIGTERM stops it after the
mail in progress (rq's warm shutdown).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import warnings

from crane_notify_mail.redisconn import DEFAULT_QUEUE, PASSWORD_ENV, connect, load_credentials

__all__ = ["main"]


def _watch_parent(parent: int, period: float = 2.0) -> None:
    """SIGTERM this process (rq's warm shutdown) once ``parent`` is gone (we are re-parented)."""
    import signal
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Run an rq worker (with its scheduler) on the mail queue until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m crane_notify_mail.worker", description=__doc__.splitlines()[0])
    ap.add_argument("--redis-url", default=os.environ.get("CRANE_MAIL_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--queue", default=DEFAULT_QUEUE)
    ap.add_argument("--username", default=None, help="Redis ACL user (the password: $" + PASSWORD_ENV + ")")
    ap.add_argument("--credentials-file", default=None, help="a bus role file with user and password")
    ap.add_argument("--name", default=None, help="worker name (default crane-mail-<host>-<pid>)")
    ap.add_argument("--burst", action="store_true", help="stop when the queue is empty (for tests)")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop (warm) when the process that started this one exits (the plugin's own worker)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    username, password = args.username, os.environ.get(PASSWORD_ENV) or None
    try:
        if args.credentials_file:
            username, password = load_credentials(args.credentials_file)
    except ValueError as exc:
        print(f"crane_notify_mail.worker: {exc}", file=sys.stderr)
        return 2
    if args.exit_with_parent:
        _watch_parent(os.getppid())
    from rq import Queue, Worker

    conn = connect(args.redis_url, username, password)
    name = args.name or f"crane-mail-{socket.gethostname()}-{os.getpid()}"
    warnings.filterwarnings("ignore", message="CLIENT LIST command not supported")  # an ACL user without it
    worker = Worker([Queue(args.queue, connection=conn)], connection=conn, name=name)
    worker.work(with_scheduler=True, burst=args.burst, logging_level=args.log_level.upper())
    return 0


if __name__ == "__main__":
    sys.exit(main())
