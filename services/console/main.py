"""Runs the console: `custody serve console` (what its container runs) and the fifth process of `custody up`."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from services.common.config import CONFIG_EXIT_CODE, ConfigError
from services.common.telemetry import configure_logging, configure_tracing
from services.common.tls.credentials import TlsDirectory, TlsFilesError
from services.console.app import create_app
from services.console.config import ConsoleSettings
from services.console.upstream import Upstream

SETTINGS = ConsoleSettings


def run(config_file: Path | None = None) -> int:
    """Process entry point; returns the exit code (2 for a configuration error, before listening)."""
    try:
        settings = ConsoleSettings.load(config_file)
        tls = None if settings.tls_dir is None else TlsDirectory(settings.tls_dir)
        if tls is not None:
            tls.read()  # refuse unusable certificate files before listening, as the services do
    except (ConfigError, TlsFilesError) as exc:
        print(f"custody console: configuration error: {exc}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    configure_logging(settings.service, settings.log_level)
    upstream = Upstream(settings, configure_tracing(settings))
    uvicorn.run(
        create_app(settings, upstream),
        host=settings.host,
        port=settings.port,
        ssl_certfile=None if tls is None else str(tls.certificate),
        ssl_keyfile=None if tls is None else str(tls.key),
        log_config=None,  # the one JSON log format (services/common/telemetry.py)
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )
    return 0
