"""What a warehouse holds: datasets, tables and typed columns, and which tables belong to a pair."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bqx_queue.config import Settings
from bqx_queue.domain import PAIRS, WarehouseError

KEY_COLUMN = "interval_time"
# Only plain identifiers reach SQL: names come from the catalog, never from user text, and
# anything outside this alphabet is refused rather than quoted.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
# Forward-looking columns: they describe the future of the series and would leak the target.
# Case-insensitive, as BigQuery's column names are: `Target_...` leaks as much as `target_...`.
FORWARD_LOOKING = re.compile(r"^(target_|lead_|fwd_|future_)", re.IGNORECASE)
# Key types a table may have: a DATETIME key is read as UTC and converted in the query.
KEY_TYPES = ("TIMESTAMP", "DATETIME")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # BigQuery type name: FLOAT64, INT64, STRING, TIMESTAMP, BOOL, NUMERIC, DATE


@dataclass(frozen=True)
class Table:
    dataset: str
    name: str
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        return f"{self.dataset}.{self.name}"

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column_type(self, name: str) -> str:
        return next(c.type for c in self.columns if c.name == name)

    def key_type(self) -> str:
        """Return the type of the table's interval_time; raise if it cannot key 1-minute bars."""
        if KEY_COLUMN not in self.column_names():
            raise WarehouseError(f"table {self.qualified} has no {KEY_COLUMN} column")
        key_type = self.column_type(KEY_COLUMN)
        if key_type not in KEY_TYPES:
            raise WarehouseError(
                f"table {self.qualified}: {KEY_COLUMN} is {key_type}, but must be TIMESTAMP or DATETIME"
            )
        return key_type


@dataclass(frozen=True)
class Catalog:
    """Tables by dataset; the only source of identifiers that appear in generated SQL."""

    tables: dict[str, dict[str, Table]] = field(default_factory=dict)

    def table(self, dataset: str, name: str) -> Table:
        try:
            return self.tables[dataset][name]
        except KeyError:
            if dataset not in self.tables:
                known = ", ".join(sorted(self.tables)) or "none"
                raise WarehouseError(f"dataset {dataset!r} not found (datasets: {known})") from None
            raise WarehouseError(f"table {dataset}.{name} not found") from None

    def dataset_tables(self, dataset: str) -> list[Table]:
        if dataset not in self.tables:
            known = ", ".join(sorted(self.tables)) or "none"
            raise WarehouseError(f"dataset {dataset!r} not found (datasets: {known})")
        return [self.tables[dataset][name] for name in sorted(self.tables[dataset])]


def check_identifier(name: str) -> str:
    """Return name if it is a plain SQL identifier; raise WarehouseError otherwise."""
    if not IDENTIFIER.match(name):
        raise WarehouseError(f"refusing identifier {name!r}: only letters, digits and _ are allowed")
    return name


def base_type(data_type: str) -> str:
    """Return a BigQuery type without its parameters: NUMERIC(10, 2) -> NUMERIC, STRING(64) -> STRING
    (INFORMATION_SCHEMA.COLUMNS reports parameterized types as declared)."""
    kind = data_type.strip().upper()
    if kind.startswith(("ARRAY", "STRUCT", "RANGE")):
        return kind
    return kind.split("(", 1)[0].strip()


def family(table: Table) -> str:
    """Return a table's family: the word before its first underscore (reg_eurusd -> reg)."""
    return table.name.split("_", 1)[0]


def is_shared(table: Table, settings: Settings) -> bool:
    return table.name.startswith(tuple(settings.shared_table_prefixes))


def pair_feature_tables(catalog: Catalog, pair: str, settings: Settings) -> tuple[list[Table], list[Table]]:
    """Return (own, shared) feature tables of a pair: own tables name the pair, shared ones
    start with a shared prefix (tri_, mkt_, var_, csi_). Raises if the pair has no tables."""
    token = check_identifier(settings.pair_table_pattern.format(pair=pair))
    own, shared = [], []
    for table in catalog.dataset_tables(settings.features_dataset):
        if is_shared(table, settings):
            shared.append(table)
        elif token in table.name:
            own.append(table)
    if not own:
        raise WarehouseError(f"pair {pair}: no tables in {settings.features_dataset} match {token!r}")
    for table in own + shared:
        table.key_type()
    return own, shared


def missing_families(catalog: Catalog, pair: str, settings: Settings) -> list[str]:
    """Return the table families other pairs have in the features dataset and this pair lacks
    (e.g. every mom_ table): the pair is analysed with what it has, and the report says so."""
    token = settings.pair_table_pattern.format(pair=pair)
    tokens = tuple(settings.pair_table_pattern.format(pair=p) for p in PAIRS)
    own_tables = [
        t
        for t in catalog.dataset_tables(settings.features_dataset)
        if not is_shared(t, settings) and any(other in t.name for other in tokens)
    ]
    everyone = {family(t) for t in own_tables}
    present = {family(t) for t in own_tables if token in t.name}
    return sorted(everyone - present)
