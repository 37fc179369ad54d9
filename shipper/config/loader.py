"""Pick the reader for a configuration file by its extension, as Fluent Bit does."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from shipper.config.classic import load_classic
from shipper.config.model import ConfigError, Document
from shipper.config.yaml_format import load_yaml

logger = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml")


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> Document:
    """Parse `path`: YAML for `.yaml`/`.yml` (any case), Fluent Bit classic otherwise.

    `env` defaults to the process environment; tests pass their own mapping.
    """
    # checked here as well as by the readers so the message is about the config itself,
    # not about a failed read deep inside an include
    if not os.path.exists(path):
        raise ConfigError(f"configuration file {path!r} does not exist", file=path)
    if os.path.isdir(path):
        raise ConfigError(f"configuration file {path!r} is a directory", file=path)
    environ: Mapping[str, str] = os.environ if env is None else env
    if path.lower().endswith(YAML_SUFFIXES):
        logger.debug("reading %s as Fluent Bit YAML", path)
        return load_yaml(path, env=environ)
    logger.debug("reading %s as Fluent Bit classic format", path)
    return load_classic(path, env=environ)
