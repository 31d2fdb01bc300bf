"""Finds each service's settings class and factory by name (imported lazily: `custody health` needs none)."""

from __future__ import annotations

import importlib
from typing import cast

from services.common.config import ServiceSettings
from services.common.server import ServiceFactory


def settings_class(service: str) -> type[ServiceSettings]:
    return cast(type[ServiceSettings], importlib.import_module(f"services.{service}.main").SETTINGS)


def factory(service: str) -> ServiceFactory:
    return cast(ServiceFactory, importlib.import_module(f"services.{service}.main").build)
