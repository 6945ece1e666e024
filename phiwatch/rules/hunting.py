"""The Sentinel hunting-query template, as a pydantic model: the format of `kql/hunting/*.yaml`.

A hunting query is what an analyst runs by hand in Sentinel's Hunting blade (or saves as a
search): no schedule, no trigger, no incident. Its fields are the ones Sentinel's own hunting
queries carry (`id`, `name`, `description`, `requiredDataConnectors`, `tactics`,
`relevantTechniques`, `query`, optional `entityMappings`), plus `version` (so lint can ask for
a bump when the query changes, as for analytic rules) and the `phiwatch:` block with what only
the local tooling reads. Lint and the offline tests treat a hunting query like a rule's query:
the same Kusto.Language check, the same case files under `kql/hunting/tests/<query>/`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from phiwatch.rules.template import EntityMapping, GuidId, RequiredDataConnector


class _Part(BaseModel):
    # As the analytic-rule template: camelCase keys, an unknown key is an error.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class HuntingSettings(_Part):
    """What Sentinel does not know about a hunting query."""

    # Why the local engine (duckdb-kql) cannot execute the query; as for rules, its cases are
    # then "not executed", never passed.
    unsupported_locally: str | None = Field(default=None, min_length=10)
    # The `let` lines an analyst edits before running it (`let patient = "...";`): lint checks
    # each one exists, so the documented way to use the query cannot silently break.
    parameters: list[Annotated[str, Field(pattern=r"^[A-Za-z_]\w*$")]] = []


class HuntingQuery(_Part):
    """One Sentinel hunting query (one file in `kql/hunting/`)."""

    id: GuidId
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    required_data_connectors: list[RequiredDataConnector] = []
    tactics: list[str] = []
    relevant_techniques: list[Annotated[str, Field(pattern=r"^T\d{4}(\.\d{3})?$")]] = []
    query: str = Field(min_length=1)
    entity_mappings: list[EntityMapping] = []
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    tags: list[Any] = []
    metadata: dict[str, Any] = {}
    phiwatch: HuntingSettings = HuntingSettings()

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, patch = (int(part) for part in self.version.split("."))
        return major, minor, patch

    @property
    def unsupported_locally(self) -> str | None:
        return self.phiwatch.unsupported_locally

    @property
    def is_nrt(self) -> bool:
        return False
