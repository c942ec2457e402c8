"""Document sources for the source, mix-in and held-out corpora, read with datatrove readers.

In: a `CorpusSpec`. Out: a list of datatrove `Document`s (deterministic order, `skip`/`limit`
applied, each cut at a newline to `max_chars`), plus counts of what was skipped and why.
Empty, binary or undecodable documents are skipped and counted, never fatal.
Also: `input_corpus` guesses the format of a `generate --input`, and `read_output_records` reads
the (source, output) rows of an existing synthetic dataset for `promptsearch metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers import HuggingFaceDatasetReader, JsonlReader, ParquetReader
from datatrove.pipeline.readers.base import BaseDiskReader

from promptsearch.errors import UserError
from promptsearch.measure import OutputRecord
from promptsearch.resources import lee_corpus_file
from promptsearch.space import CorpusSpec


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
    if spec.format == "embedded":
        path = lee_corpus_file(spec.path)
        return TextReader(str(path.parent), per="line", glob_pattern=path.name, recursive=False, limit=limit, skip=skip)
    if spec.format == "hub":
        return HuggingFaceDatasetReader(
            spec.path, {"name": spec.hub_config, "split": spec.split}, streaming=True, **common
        )
    path = Path(spec.path)
    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    folder, glob = (str(path.parent), path.name) if path.is_file() else (str(path), spec.glob)
    if spec.format == "jsonl":
        return JsonlReader(folder, glob_pattern=glob, **common)
    if spec.format == "parquet":
        return ParquetReader(folder, glob_pattern=glob, **common)
    return TextReader(folder, per="file", glob_pattern=glob or "**/*.txt", limit=limit, skip=skip)


def _is_binary(text: str) -> bool:
    return "\x00" in text or sum(not (c.isprintable() or c.isspace()) for c in text[:2000]) > 20


def _usable(corpus: Corpus, documents: Iterator[Document], spec: CorpusSpec) -> Iterator[Document]:
    """Documents after skipping (and counting) empty and binary ones, then `skip`; cut to `max_chars`."""
    position = 0
    for document in documents:
        text = (document.text or "").strip()
        if not text:
            corpus.skipped["empty"] += 1
            continue
        if _is_binary(text):
            corpus.skipped["binary"] += 1
            continue
        position += 1
        if position <= spec.skip:
            continue
        if len(text) > spec.max_chars:
            corpus.skipped["truncated"] += 1
        document.text = truncate_at_newline(text, spec.max_chars)
        document.id = str(document.id)
        yield document


def read_corpus(spec: CorpusSpec) -> Corpus:
    corpus = Corpus(documents=[])
    reader = corpus_reader(spec)
    try:
        for document in _usable(corpus, reader.run(), spec):
            corpus.documents.append(document)
            if spec.limit is not None and len(corpus.documents) >= spec.limit:
                break
    except FileNotFoundError as exc:
        raise UserError(f"corpus {spec.path}: {exc}") from exc
    if isinstance(reader, TextReader) and reader.not_utf8:
        corpus.skipped["not_utf8"] = reader.not_utf8
    if not corpus.documents:
        raise UserError(f"corpus {spec.format}:{spec.path} yielded no usable documents")
    return corpus


def input_corpus(path: str, input_format: str, text_key: str, limit: int | None) -> CorpusSpec:
    """The corpus `generate --input` names; `input_format="auto"` guesses it from the path: JSON Lines,
    Parquet, the embedded Lee corpus, else plain-text files."""
    if input_format == "auto":
        name = path.lower()
        input_format = (
            "jsonl"
            if ".jsonl" in name or ".json" in name
            else "parquet"
            if name.endswith(".parquet")
            else "embedded"
            if path in ("lee_background", "lee")
            else "text"
        )
    return CorpusSpec(format=input_format, path=path, text_key=text_key, limit=limit)


def read_output_records(file: Path, source_key: str, output_key: str, family: str = "") -> list[OutputRecord]:
    """The (source, output) rows of a JSON Lines (optionally .gz) or Parquet file, read with datatrove: the
    output field becomes the document text, the others its metadata. `family` (default: each row's
    `metadata.template_family`) is the template family format validity checks."""
    if not file.is_file():
        raise UserError(f"file not found: {file}")
    spec = CorpusSpec(format="parquet" if file.suffix == ".parquet" else "jsonl", path=str(file), text_key=output_key)
    documents = list(corpus_reader(spec).run())
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
