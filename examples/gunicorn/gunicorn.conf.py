"""gunicorn settings for running under pyinit, all from the environment.

WEB_CONCURRENCY: the number of sync workers (default 2); pyinit can set it from the container's
CPU limit. HOST and PORT: where to listen (default 0.0.0.0:8000). GRACEFUL_TIMEOUT: seconds the
workers get to finish their requests after SIGTERM (default 20); keep it below pyinit's
--drain-timeout, so that gunicorn exits by itself, with 0, before pyinit has to SIGKILL it.
"""
import os

bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
# A slow request is not a hung worker: the drain, not the worker timeout, bounds it.
timeout = 120
# The kubelet collects the container's stdout and stderr.
accesslog = "-"
errorlog = "-"
# Worker heartbeats go to a tmpfs: with a read-only root filesystem /tmp may not be writable.
worker_tmp_dir = "/dev/shm"
# gunicorn's control socket would go under $HOME, which a read-only root filesystem cannot hold;
# pyinit and the kubelet are the container's control interface.
control_socket_disable = True


def post_worker_init(worker):
    # Logged once the worker's signal handlers are in place: from here a SIGTERM drains it.
    worker.log.info("Worker ready (pid: %s)", worker.pid)
