"""The grammar of lineage resource names, in one place: lineage parses with it, and runs and art_studio check the
lineage names they are given with it, so a name is valid for all of them or for none.

projects/{project}/artifacts/{type}/{entity}/versions/{n}; no dots, slashes or separators inside a segment. A
type's schema version (which its versions are created against) has a grammar here too, shared with the recipe
driver that checks module manifests before calling lineage.

The names of server-generated records live here too: a run `runs/run_<32 hex>` (the runs service mints and parses
it, art_studio and the console check it before calling) and an audited AI call `calls/call_<32 hex>` (ai_gateway),
so a client refuses exactly what the service would.

A person's name (the `alice` of the principal `human:alice`, `custody users`) uses the project grammar: lower case
only, so that `Alice` and `alice` can never be two people, and nothing that could act as a separator or a path.
"""

from __future__ import annotations

import re

from services.common.ids import id_pattern, id_regex

PROJECT = r"[a-z0-9][a-z0-9_-]{0,62}"
TYPE = r"[a-z][a-z0-9_]{0,62}"
ENTITY = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
NUMBER = r"[1-9][0-9]{0,17}"

VERSION_NAME = re.compile(
    rf"^projects/(?P<project>{PROJECT})/artifacts/(?P<type>{TYPE})/(?P<entity>{ENTITY})/versions/(?P<number>{NUMBER})$"
)

RUN_ID_PREFIX = "run"
RUN_ID = id_pattern(RUN_ID_PREFIX)
RUN_NAME = re.compile(rf"^runs/(?P<run>{id_regex(RUN_ID_PREFIX)})$")
CALL_ID_PREFIX = "call"
CALL_ID = id_pattern(CALL_ID_PREFIX)
CALL_NAME = re.compile(rf"^calls/(?P<call>{id_regex(CALL_ID_PREFIX)})$")

SCHEMA_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")

PERSON_NAME = re.compile(rf"^{PROJECT}$")
