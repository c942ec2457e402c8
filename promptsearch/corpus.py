"""Document sources for the source, mix-in and held-out corpora, read with datatrove readers.

In: a `CorpusSpec`. Out: a list of datatrove `Document`s (deterministic order, `skip`/`limit`
applied, each cut at a newline to `max_chars`), plus counts of what was skipped and why.
Empty, binary or undecodable documents are skipped and counted, never fatal.
Also: `input_corpus` guesses the format of a `generate --input`, and `read_output_records` reads
the (source, output) rows of an existing synthetic dataset for `promptsearch metrics`.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, get_args

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import HuggingFaceDatasetReader, JsonlReader, ParquetReader
from datatrove.pipeline.readers.base import BaseDiskReader

from promptsearch.benchmark_data import sciq_corpus_file
from promptsearch.config import YamlDocument
from promptsearch.errors import SpaceError, UserError
from promptsearch.measure import OutputRecord
from promptsearch.resources import lee_corpus_file
from promptsearch.space import EMBEDDED_CORPORA, CorpusSpec, SearchSpace


class BadRow(UserError):
    """A row that cannot be read (not UTF-8, not JSON, not an object): the command stops here unless the
    user asked to skip such rows."""


class StrictJsonlReader(JsonlReader):
    """datatrove's JSON Lines reader, strict: a row that is not UTF-8, not valid JSON or not an object raises
    `BadRow` with the file, line and reason (datatrove's own logs a warning and, for a decoding error, drops
    the rest of the file). With `skip_bad_rows` such rows are skipped and counted in `skipped` instead; rows
    whose text is empty or missing are always skipped and counted. Blank lines are not rows."""

    name = "🐿 Jsonl (strict)"

    def __init__(self, data_folder: str, skip_bad_rows: bool = False, **kwargs):
        super().__init__(data_folder, **kwargs)
        self.skip_bad_rows = skip_bad_rows
        self.skipped: Counter[str] = Counter()

    def _bad(self, filepath: str, line: int, reason: str, key: str) -> None:
        if not self.skip_bad_rows:
            where = self.data_folder.resolve_paths(filepath)
            raise BadRow(f"{where}, line {line}: {reason} (pass --skip-bad-rows to skip such rows)")
        self.stat_update(f"skipped_{key}")
        self.skipped[key] += 1

    def read_file(self, filepath: str) -> DocumentsPipeline:
        try:
            yield from self._rows(filepath)
        except (OSError, EOFError, zlib.error) as exc:  # not gzip, cut short, damaged
            raise BadRow(f"{self.data_folder.resolve_paths(filepath)}: cannot be read ({exc})") from exc

    def _rows(self, filepath: str) -> DocumentsPipeline:
        import orjson

        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            for index, raw in enumerate(f):
                line = index + 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    self._bad(
                        filepath, line, f"not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})", "not_utf8"
                    )
                    continue
                if not text.strip():
                    continue
                try:
                    data = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    self._bad(filepath, line, f"not valid JSON ({exc})", "not_json")
                    continue
                if not isinstance(data, dict):
                    self._bad(filepath, line, f"not a JSON object (a {type(data).__name__})", "not_json")
                    continue
                value = data.get(self.text_key)
                if value is not None and not isinstance(value, str):
                    self._bad(filepath, line, f"field {self.text_key!r} is not a string", "not_text")
                    continue
                if not value:  # counted here; datatrove's reader would log a warning and drop it
                    self.skipped["empty" if self.text_key in data else f"no_{self.text_key}_field"] += 1
                    continue
                with self.track_time():
                    document = self.get_document_from_dict(data, filepath, index)
                if document is None:
                    self.skipped["empty"] += 1
                    continue
                yield document


class StrictParquetReader(ParquetReader):
    """datatrove's Parquet reader; a file that is not Parquet (or is damaged), has no text column or holds
    something other than text in it is a `BadRow` naming it (datatrove's warns once per row, or fails later)."""

    def read_file(self, filepath: str) -> DocumentsPipeline:
        import pyarrow.parquet as pq
        from pyarrow import ArrowException

        where = self.data_folder.resolve_paths(filepath)
        try:
            with self.data_folder.open(filepath, "rb") as f:
                columns = pq.read_schema(f).names
            if self.text_key not in columns:
                raise BadRow(f"{where}: no column {self.text_key!r} (its columns: {', '.join(columns)})")
            for document in super().read_file(filepath):
                if not isinstance(document.text, str):
                    kind = type(document.text).__name__
                    raise BadRow(f"{where}: column {self.text_key!r} holds {kind} values, not text")
                yield document
        except ArrowException as exc:
            raise BadRow(f"{where}: not a readable Parquet file ({exc})") from exc


def _exact_file_glob(name: str) -> str:
    """A glob that matches the file `name` only: datatrove turns a pattern without wildcards into the suffix
    glob `*name` (so `data.jsonl` would also read `old_data.jsonl`), so one ordinary character is bracketed."""
    escaped = glob_escape(name)
    if escaped != name:  # already has a (bracket-escaped) wildcard character
        return escaped
    for i, char in enumerate(name):
        if char.isalnum() or char in "._-":
            return f"{name[:i]}[{char}]{name[i + 1 :]}"
    raise UserError(f"{name}: cannot read a file with this name; rename it")


class TextReader(BaseDiskReader):
    """Plain-text files: one document per file (`per="file"`) or per non-empty line (`per="line"`)."""

    name = "📄 Text"

    def __init__(self, data_folder: str, per: str = "file", **kwargs):
        super().__init__(data_folder, **kwargs)
        self.per = per
        self.not_utf8 = 0

    def read_file(self, filepath: str) -> DocumentsPipeline:
        with self.data_folder.open(filepath, "rb") as f:
            raw = f.read()
        for index, chunk in enumerate(raw.splitlines() if self.per == "line" else [raw]):
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError:
                # Not UTF-8: skipped and counted, like other unusable documents.
                self.stat_update("skipped_not_utf8")
                self.not_utf8 += 1
                continue
            if document := self.get_document_from_dict({"text": text}, filepath, index):
                yield document


@dataclass
class Corpus:
    documents: list[Document]
    skipped: Counter[str] = field(default_factory=Counter)
    usable: int = 0


def truncate_at_newline(text: str, max_chars: int) -> str:
    """Cut to at most `max_chars`, at the last newline (or space) before the limit, as FinePhrase did."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    if cut < max_chars // 2:
        cut = text.rfind(" ", 0, max_chars)
    return text[: cut if cut > 0 else max_chars].rstrip()


def corpus_reader(spec: CorpusSpec, limit: int = -1, skip: int = 0) -> BaseDiskReader | HuggingFaceDatasetReader:
    """The datatrove reader for a corpus; `read_corpus` applies skip/limit itself, after filtering."""
    common: dict[str, Any] = {"text_key": spec.text_key, "id_key": spec.id_key, "limit": limit, "skip": skip}
    if spec.format == "embedded" and spec.path == "sciq":
        path = sciq_corpus_file()
        return StrictJsonlReader(
            str(path.parent), glob_pattern=_exact_file_glob(path.name), recursive=False, limit=limit, skip=skip
        )
    if spec.format == "embedded":
        path = lee_corpus_file(spec.path)
        return TextReader(
            str(path.parent),
            per="line",
            glob_pattern=_exact_file_glob(path.name),
            recursive=False,
            limit=limit,
            skip=skip,
        )
    if spec.format == "hub":
        return HuggingFaceDatasetReader(
            spec.path, {"name": spec.hub_config, "split": spec.split}, streaming=True, **common
        )
    path = Path(spec.path)
    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    # A file is exactly that file; a folder is read with the spec's glob (recursively).
    if path.is_file():
        folder, glob, recursive = str(path.parent), _exact_file_glob(path.name), False
    else:
        folder, glob, recursive = str(path), spec.glob, True
    if spec.format == "jsonl":
        return StrictJsonlReader(
            folder, skip_bad_rows=spec.skip_bad_rows, glob_pattern=glob, recursive=recursive, **common
        )
    if spec.format == "parquet":
        return StrictParquetReader(folder, glob_pattern=glob, recursive=recursive, **common)
    return TextReader(folder, per="file", glob_pattern=glob or "**/*.txt", recursive=recursive, limit=limit, skip=skip)


def unusable_reason(text: str) -> str | None:
    """Why a document cannot be rephrased ("empty", "binary"), or None."""
    text = text.strip()
    if not text:
        return "empty"
    if "\x00" in text or sum(not (c.isprintable() or c.isspace()) for c in text[:2000]) > 20:
        return "binary"
    return None


class UsableDocuments(BaseFilter):
    """The documents `read_corpus` keeps, as a pipeline step: a `generate` run drops what its scan counted
    as skipped, so the summary it printed is what the run did."""

    name = "usable documents"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = unusable_reason(doc.text or "")
        return True if reason is None else (False, reason)


def _usable(corpus: Corpus, documents: Iterator[Document], spec: CorpusSpec) -> Iterator[Document]:
    """Documents after skipping (and counting) empty and binary ones, then `skip`; cut to `max_chars`."""
    position = 0
    for document in documents:
        text = (document.text or "").strip()
        if reason := unusable_reason(text):
            corpus.skipped[reason] += 1
            continue
        position += 1
        if position <= spec.skip:
            continue
        if len(text) > spec.max_chars:
            corpus.skipped["truncated"] += 1
        document.text = truncate_at_newline(text, spec.max_chars)
        document.id = str(document.id)
        yield document


def _read(spec: CorpusSpec, keep: bool) -> Corpus:
    """The usable documents (kept only when `keep`, else just counted) and what was skipped, by reason."""
    corpus = Corpus(documents=[])
    reader = corpus_reader(spec)
    usable = 0
    try:
        for document in _usable(corpus, reader.run(), spec):
            usable += 1
            if keep:
                corpus.documents.append(document)
            if spec.limit is not None and usable >= spec.limit:
                break
    except FileNotFoundError as exc:
        raise UserError(f"corpus {spec.path}: {exc}") from exc
    if isinstance(reader, TextReader) and reader.not_utf8:
        corpus.skipped["not_utf8"] += reader.not_utf8
    if isinstance(reader, StrictJsonlReader):
        corpus.skipped.update(reader.skipped)
    if not usable:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(corpus.skipped.items()))
        raise UserError(
            f"corpus {spec.format}:{spec.path} yielded no usable documents"
            + (f" (skipped: {counts})" if counts else "")
            + (f" after skipping the first {spec.skip}" if spec.skip else "" if counts else " (it holds none)")
        )
    corpus.usable = usable
    return corpus


def read_corpus(spec: CorpusSpec) -> Corpus:
    """Every usable document of `spec` (after `skip`, up to `limit`), and the counts of those skipped."""
    return _read(spec, keep=True)


def scan_corpus(spec: CorpusSpec) -> Corpus:
    """Read `spec` as `read_corpus` does without keeping the documents: a bad row, or no usable document,
    is an error before any work starts; `usable` and `skipped` say what a run will read."""
    return _read(spec, keep=False)


def check_space_corpora(space: SearchSpace, path: Path) -> None:
    """Read a space's local corpora as its study will, so a corpus with no usable document (a `skip` past its
    end, a damaged row) is found by `space validate` and `study create`, not at `study start`. Hub datasets
    are left to the study: reading them needs the network."""
    problems = []
    for name in ("source", "mix_in", "heldout"):
        spec: CorpusSpec = getattr(space, name)
        if spec.format != "hub":
            try:
                scan_corpus(spec)
            except UserError as exc:
                problems.append(YamlDocument(path).located((name,), str(exc)))
    if problems:
        raise SpaceError(str(path), problems)


def input_corpus(
    path: str, input_format: str, text_key: str, limit: int | None, skip_bad_rows: bool = False
) -> CorpusSpec:
    """The corpus `generate --input` names; `input_format="auto"` guesses it from the path: JSON Lines,
    Parquet, the embedded corpora (Lee, SciQ), else plain-text files."""
    if input_format == "auto":
        name = path.lower()
        input_format = (
            "jsonl"
            if ".jsonl" in name or ".json" in name
            else "parquet"
            if name.endswith(".parquet")
            else "embedded"
            if path in EMBEDDED_CORPORA
            else "text"
        )
    if input_format not in (formats := get_args(CorpusSpec.model_fields["format"].annotation)):
        raise UserError(f"--input-format must be auto or one of {', '.join(formats)} (got {input_format!r})")
    return CorpusSpec(format=input_format, path=path, text_key=text_key, limit=limit, skip_bad_rows=skip_bad_rows)


def read_output_records(
    file: Path,
    source_key: str,
    output_key: str,
    family: str = "",
    *,
    skip_bad_rows: bool = False,
    skipped: Counter[str] | None = None,
) -> list[OutputRecord]:
    """The (source, output) rows of a JSON Lines (optionally .gz) or Parquet file, read with datatrove: the
    output field becomes the document text, the others its metadata. `family` (default: each row's
    `metadata.template_family`) is the template family format validity checks. A row that cannot be read
    stops with its file and line unless `skip_bad_rows`; rows skipped are counted, by reason, in `skipped`."""
    if not file.is_file():
        raise UserError(f"file not found: {file}")
    spec = CorpusSpec(
        format="parquet" if file.suffix == ".parquet" else "jsonl",
        path=str(file),
        text_key=output_key,
        skip_bad_rows=skip_bad_rows,
    )
    reader = corpus_reader(spec)
    documents = list(reader.run())
    if skipped is not None and isinstance(reader, StrictJsonlReader):
        skipped.update(reader.skipped)
    if not documents:
        raise UserError(f"{file}: no rows with a {output_key!r} field")
    if any(source_key not in d.metadata for d in documents):
        raise UserError(f"{file}: rows have no field {source_key!r}")
    return [
        OutputRecord(
            str(d.metadata[source_key] or ""),
            d.text,
            family or str((d.metadata.get("metadata") or {}).get("template_family", "")),
        )
        for d in documents
    ]
