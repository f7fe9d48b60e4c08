"""`embedkeeper run`: hand over to the service, as a daemon until SIGTERM or for one pass
(`--once`, for cron)."""

from __future__ import annotations

import argparse

from embedkeeper.config import Config
from embedkeeper.service.lifecycle import run_daemon, run_once


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    if args.once:
        return run_once(config)
    return run_daemon(config, metrics_port=args.metrics_port)
