"""The adapter machinery: source configs, the registry, and :func:`load`.

An *adapter* knows one dataset's schema (hub ids, default config and split, column names, how
answers and options are encoded) and turns one row into the fields of a
:class:`vlmcot.records.VQARecord`. :func:`load` does everything else once for all adapters:
opens the source (hub id or local copy) with ``datasets``, checks the columns, writes images,
validates records, skips and counts bad rows (a message names each one), enforces ``limit``.

A :class:`SourceConfig` is a params.yaml entry::

    - name: docvqa              # adapter (see ADAPTERS / docs/datasets.md)
      split: validation
      local_path: /data/DocVQA  # optional: a local copy laid out like the hub repo
      limit: 500
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from vlmcot.adapters.images import ImageError, save_bytes, save_image
from vlmcot.adapters.text import BadRow
from vlmcot.config import ConfigError, StrictModel
from vlmcot.records import VQARecord, validate_vqa

log = logging.getLogger("vlmcot.adapters")

# Bad-row messages logged one by one before the rest are only counted (the report keeps them all
# up to MAX_MESSAGES).
LOG_FIRST = 20
MAX_MESSAGES = 200


class SourceError(ConfigError):
    """The source as a whole cannot be read (not found, unknown split, missing column)."""


class NoOptions(StrictModel):
    """Adapters without options of their own."""


class SourceConfig(StrictModel):
    """One data source in params.yaml: which adapter, where the data lives, which slice of it."""

    # adapter name in the registry, e.g. "chartqa", "docvqa", "vlmevalkit_tsv" (docs/datasets.md)
    name: str
    # Hugging Face hub dataset id; null = the adapter's default. lmms-lab/X and lmms-lab-encoder/X
    # are the same data (lmms-eval moved its copies in 2026): either is accepted, and the other is
    # tried when the first is not found
    hub_id: str | None = None
    # local copy instead of the hub: a directory laid out like the hub repo (parquet files and the
    # README `configs:` block), or a .tsv file for vlmevalkit_tsv. Takes precedence over hub_id
    local_path: str | None = None
    # dataset config name (e.g. "InfographicVQA"); null = the adapter's default; "default" for
    # repos that have no named configs
    config: str | None = None
    # split to read; null = the adapter's default (its evaluation split)
    split: str | None = None
    # hub git revision (commit sha or tag): pin it for reproducible data. Ignored for local_path
    revision: str | None = None
    # data files to read instead of the repo README's `configs:` block, {split: glob or [globs]},
    # e.g. {train: "InfographicVQA/train-*.parquet"} for a split a README leaves out (lmms-lab/DocVQA
    # keeps its train parquet files but no longer lists them); `config` is then not used
    data_files: dict[str, str | list[str]] | None = None
    # label written to records' `dataset` field (metrics and mixes group by it); null = adapter's
    dataset: str | None = None
    # keep at most this many good records (the first ones in file order); null = all
    limit: int | None = Field(default=None, ge=1)
    # stream rows from the hub instead of downloading the whole split first (useful with limit)
    streaming: bool = False
    # where `datasets` caches downloads and Arrow files; null = its default (HF_DATASETS_CACHE)
    cache_dir: str | None = None
    # column overrides, role -> column name (roles are listed per adapter in docs/datasets.md)
    fields: dict[str, str] = Field(default_factory=dict)
    # adapter-specific options (e.g. aokvqa: {mode: direct}); checked against the adapter's Options
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_against_adapter(self) -> SourceConfig:
        adapter = get_adapter(self.name)  # raises naming the known adapters
        unknown = sorted(set(self.fields) - set(adapter.fields))
        if unknown:
            raise ValueError(
                f"fields.{unknown[0]}: not a field role of adapter {self.name!r} "
                f"(roles: {', '.join(sorted(adapter.fields))})"
            )
        adapter.parse_options(self.options)
        return self


@dataclass
class LoadReport:
    """What a load did: rows seen, records kept, rows filtered out by design, rows skipped as bad."""

    source: str = ""
    rows: int = 0
    records: int = 0
    filtered: int = 0  # rows excluded on purpose (ScienceQA without image, other TSV split)
    bad: int = 0
    reasons: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    def add_bad(self, where: str, reason: str, message: str) -> None:
        self.bad += 1
        self.reasons[reason] += 1
        text = f"{where}: {message}"
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(text)
        if self.bad <= LOG_FIRST:
            log.warning("skipped %s", text)
        elif self.bad == LOG_FIRST + 1:
            log.warning("%s: more bad rows; only counting them from now on", self.source)

    @property
    def bad_fraction(self) -> float:
        seen = self.records + self.bad
        return self.bad / seen if seen else 0.0

    def check(self, max_bad_fraction: float) -> None:
        """Fail loudly when too many rows were bad (a wrong schema, not a few broken rows)."""
        if self.bad_fraction > max_bad_fraction:
            top = ", ".join(f"{k}={v}" for k, v in self.reasons.most_common(5))
            first = self.messages[0] if self.messages else ""
            raise SourceError(
                f"{self.source}: {self.bad} of {self.records + self.bad} rows bad "
                f"({self.bad_fraction:.1%} > {max_bad_fraction:.1%}; {top}). First: {first}"
            )

    def as_metrics(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}.rows": self.rows, f"{prefix}.records": self.records,
               f"{prefix}.filtered": self.filtered, f"{prefix}.bad": self.bad}
        out.update({f"{prefix}.bad.{k}": v for k, v in sorted(self.reasons.items())})
        return out


class Filtered(Exception):
    """Raised by an adapter for a row excluded on purpose (counted, not reported as bad)."""


@dataclass
class Row:
    """One source row on its way to a record: the raw values plus a stable key for the id."""

    key: str  # the source's own id for the row (question id, index) or its position
    values: dict[str, Any]
    label: str  # for messages: "row 17" or "line 17"


class Adapter:
    """Base for one source schema. Subclasses set the class attributes and :meth:`convert`."""

    name: ClassVar[str]
    description: ClassVar[str]
    dataset: ClassVar[str]  # default record label
    hub_ids: ClassVar[tuple[str, ...]] = ()  # first = default; lmms-lab aliases are added
    config: ClassVar[str | None] = None
    # default config for other accepted hub ids whose layout differs (None = the repo's only one)
    hub_configs: ClassVar[dict[str, str | None]] = {}
    split: ClassVar[str] = "test"
    metric: ClassVar[str] = "exact_match"
    # role -> default column. Roles in `optional` may be absent from the data.
    fields: ClassVar[dict[str, str]] = {}
    optional: ClassVar[frozenset[str]] = frozenset()
    key_role: ClassVar[str | None] = None  # role holding the row's own id; None = position
    image_roles: ClassVar[tuple[str, ...]] = ("image",)  # cast to undecoded bytes on load
    Options: ClassVar[type[StrictModel]] = NoOptions
    # for sources no hub repo carries: what to download to local_path (`vlmcot plan` prints it)
    requires_local: ClassVar[str | None] = None

    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg
        self.opts = self.parse_options(cfg.options)
        self.col = {**self.fields, **cfg.fields}
        self.split_name = cfg.split or self.split
        self.label = cfg.dataset or self.dataset
        self.features: Any = None  # datasets.Features of the opened split, when known
        self.base_dir: Path | None = None  # where relative image paths resolve
        self.images = None  # the prepare stage's ImagePolicy, set by load (None: the defaults)

    # --- configuration ----------------------------------------------------------------------
    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> StrictModel:
        from pydantic import ValidationError

        try:
            return cls.Options.model_validate(options)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            raise ValueError(f"options.{loc}: {msg} (adapter {cls.name!r})") from None

    @classmethod
    def accepted_hub_ids(cls) -> tuple[str, ...]:
        out: list[str] = []
        for h in cls.hub_ids:
            out.extend(a for a in hub_aliases(h) if a not in out)
        return tuple(out)

    def describe(self) -> str:
        where = self.cfg.local_path or self.cfg.hub_id or (self.hub_ids[0] if self.hub_ids else "?")
        cfg = f"/{self.cfg.config or self.config}" if (self.cfg.config or self.config) else ""
        return f"{self.name}[{where}{cfg}:{self.split_name}]"

    # --- reading ----------------------------------------------------------------------------
    def rows(self) -> Iterator[Row]:
        """Rows of the configured split, from the hub or a local copy (``datasets``)."""
        ds = self._open_hf()
        key_col = self.col.get(self.key_role) if self.key_role else None
        for n, values in enumerate(ds):
            key = values.get(key_col) if key_col else None
            yield Row(key=str(n) if key is None or str(key) == "" else str(key), values=values,
                      label=f"row {n}")

    def _open_hf(self):
        import datasets

        cfg = self.cfg
        if cfg.local_path is not None:
            if not Path(cfg.local_path).exists():
                raise SourceError(f"{self.describe()}: local_path {cfg.local_path} does not exist")
            candidates = [cfg.local_path]
            self.base_dir = Path(cfg.local_path)
        else:
            first = cfg.hub_id or (self.hub_ids[0] if self.hub_ids else None)
            if first is None:
                raise SourceError(f"{self.describe()}: set hub_id or local_path")
            if cfg.hub_id and cfg.hub_id not in self.accepted_hub_ids():
                log.warning("%s: hub_id %s is not one this adapter knows (%s); assuming the same "
                            "schema", self.name, cfg.hub_id, ", ".join(self.accepted_hub_ids()))
            candidates = list(hub_aliases(first))
        last_err: Exception | None = None
        for path in candidates:
            config = cfg.config if cfg.config is not None else self.hub_configs.get(path, self.config)
            if cfg.data_files is not None:
                if self.split_name not in cfg.data_files:
                    raise SourceError(f"{self.describe()}: data_files has no entry for split {self.split_name!r}")
                config = None  # the files replace the README's configs
            extra = {"data_files": cfg.data_files} if cfg.data_files is not None else {}
            try:
                ds = datasets.load_dataset(
                    path, config, split=self.split_name, streaming=cfg.streaming,
                    cache_dir=cfg.cache_dir, revision=None if cfg.local_path else cfg.revision, **extra,
                )
                break
            except datasets.exceptions.DatasetNotFoundError as e:
                last_err = e
                continue
            except (ValueError, FileNotFoundError, KeyError) as e:
                # Unknown config/split, missing data files: the user's to fix, name the source.
                raise SourceError(f"{self.describe()}: {type(e).__name__}: {_first_line(e)}") from None
        else:
            raise SourceError(f"{self.describe()}: dataset not found ({_first_line(last_err)})")
        self.features = ds.features
        ds = self._check_columns(ds)
        return ds

    def _check_columns(self, ds):
        import datasets

        columns = list(ds.features) if ds.features is not None else None
        if columns is None:
            return ds
        for role, col in sorted(self.col.items()):
            if col not in columns and role not in self.optional:
                raise SourceError(
                    f"{self.describe()}: column {col!r} (field role {role!r}) not in the data; "
                    f"columns: {', '.join(columns)}. Set fields.{role} to map it."
                )
        for role in self.image_roles:
            col = self.col.get(role)
            if col in columns and isinstance(ds.features[col], datasets.Image):
                # Keep the encoded bytes: written as-is, no decode/re-encode round trip.
                ds = ds.cast_column(col, datasets.Image(decode=False))
        return ds

    # --- converting -------------------------------------------------------------------------
    def get(self, row: Row, role: str) -> Any:
        """The row's value for a role (None if an optional column is absent)."""
        col = self.col[role]
        if col not in row.values:
            if role in self.optional:
                return None
            raise BadRow("missing_field", f"no column {col!r} (role {role!r})")
        return row.values[col]

    def class_name(self, role: str, value: Any) -> Any:
        """The name behind a ClassLabel integer (ChartQA's human_or_machine)."""
        import datasets

        feat = (self.features or {}).get(self.col[role]) if self.features is not None else None
        if isinstance(feat, datasets.ClassLabel) and isinstance(value, int):
            return feat.int2str(value)
        return value

    def record_id(self, row: Row) -> str:
        """``<dataset>_<split>_<key>``: unique across the splits of one source."""
        return f"{self.label}_{self.split_name}_{row.key}"

    def image_value(self, row: Row) -> Any:
        """What :func:`save_image` receives; override for several images or external files."""
        return self.get(row, self.image_roles[0])

    def convert(self, row: Row) -> dict[str, Any]:
        """Record fields except id, image, dataset, split (filled by :func:`load`).

        Must set question, answer, qtype, metric; may set answers, choices, meta. Raise
        :class:`BadRow` for a broken row, :class:`Filtered` for one excluded on purpose.
        """
        raise NotImplementedError


def hub_aliases(hub_id: str) -> tuple[str, ...]:
    """The ids under which the same data lives: lmms-lab/X and lmms-lab-encoder/X, in that order
    starting with the one given."""
    owner, sep, name = hub_id.partition("/")
    if sep and owner in ("lmms-lab", "lmms-lab-encoder"):
        other = "lmms-lab-encoder" if owner == "lmms-lab" else "lmms-lab"
        return (hub_id, f"{other}/{name}")
    return (hub_id,)


def _first_line(e: BaseException | None) -> str:
    return str(e).strip().splitlines()[0] if e is not None and str(e).strip() else repr(e)


# --- registry --------------------------------------------------------------------------------
ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    if cls.name in ADAPTERS:
        raise ValueError(f"adapter {cls.name!r} registered twice")
    ADAPTERS[cls.name] = cls
    return cls


def get_adapter(name: str) -> type[Adapter]:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}") from None


# --- the load loop ---------------------------------------------------------------------------
def load(cfg: SourceConfig, image_dir: str | Path, report: LoadReport | None = None,
         images=None) -> Iterator[VQARecord]:
    """Yield the source's rows as validated VQA records, images written under ``image_dir/<dataset>``.

    Bad rows (undecodable image, missing or hidden answer, unparseable options, duplicate id) are
    skipped, each with a message naming the row, and counted in ``report``; a problem with the
    source as a whole (not found, missing column) raises :class:`SourceError`.
    """
    adapter = get_adapter(cfg.name)(cfg)
    adapter.images = images
    report = report if report is not None else LoadReport()
    report.source = adapter.describe()
    out_dir = Path(image_dir) / adapter.label
    seen: dict[str, str] = {}
    try:
        from tqdm.auto import tqdm

        rows = tqdm(adapter.rows(), desc=report.source, unit="row", disable=None)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        rows = adapter.rows()
    for row in rows:
        report.rows += 1
        rid = adapter.record_id(row)
        where = f"{report.source} {row.label} (id {rid})"
        try:
            fields = adapter.convert(row)
            value = adapter.image_value(row)
            # images: the prepare stage's ImagePolicy (limits and confinement of what is read)
            image = (save_bytes(value, out_dir, images) if isinstance(value, bytes)
                     else save_image(value, out_dir, adapter.base_dir, images))
        except Filtered:
            report.filtered += 1
            continue
        except BadRow as e:
            report.add_bad(where, e.reason, str(e))
            continue
        except ImageError as e:
            report.add_bad(where, "bad_image", str(e))
            continue
        except Exception as e:  # noqa: BLE001 - one bad row never kills a long load
            report.add_bad(where, "error", f"{type(e).__name__}: {e}")
            continue
        if rid in seen:
            report.add_bad(where, "duplicate_id", f"id already used by {seen[rid]}")
            continue
        raw = {"id": rid, "image": image, "dataset": adapter.label, "split": adapter.split_name,
               "metric": adapter.metric, **fields}
        good, errors = validate_vqa([raw])
        if errors:
            report.add_bad(where, "invalid_record", errors[0])
            continue
        seen[rid] = row.label
        report.records += 1
        yield good[0]
        if cfg.limit is not None and report.records >= cfg.limit:
            break
    if report.bad > LOG_FIRST:
        log.warning("%s: %d bad rows in all (%s)", report.source, report.bad,
                    ", ".join(f"{k}={v}" for k, v in report.reasons.most_common()))
    log.info("%s: %d records from %d rows (%d filtered, %d bad)", report.source, report.records,
             report.rows, report.filtered, report.bad)


def load_all(cfg: SourceConfig, image_dir: str | Path) -> tuple[list[VQARecord], LoadReport]:
    """Convenience: the whole source as a list plus its report."""
    report = LoadReport()
    return list(load(cfg, image_dir, report)), report
