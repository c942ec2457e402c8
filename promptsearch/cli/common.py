"""What every command of the CLI shares: the consoles, the --db and --workdir options, and printing.

Numbers are formatted here (`fmt`, `value`, `values`) and tables printed by one helper (`table`), so each
command only turns the library's rows into cells.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from promptsearch.store import DEFAULT_URL, redact

# Wide when piped, so tables stay readable in logs and CI output.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str, typer.Option("--db", envvar="PROMPTSEARCH_DB", help="SQLAlchemy URL for Optuna's and promptsearch's tables.")
]
WorkdirOption = Annotated[Path, typer.Option("--workdir", help="Folder for generated data, logs and checkpoints.")]
DEFAULT_WORKDIR = Path("promptsearch-runs")
__all__ = ["DEFAULT_URL", "DEFAULT_WORKDIR", "DbOption", "WorkdirOption", "console", "err_console"]


def describe_db(url: str) -> str:
    """The database for a message: a SQLite file by its absolute path, any other URL without its password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite:///{Path(parsed.database).resolve()}"
    return redact(url)


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def value(number: float | None) -> str:
    """An objective value or score: four decimals, three significant digits below 0.01 (a tiny proxy's gold
    probabilities are ~0.001 and their noise ~0.00003), or '-' when there is none."""
    if number is None:
        return "-"
    return f"{number:.3g}" if 0 < abs(number) < 0.01 else f"{number:.4f}"


def values(numbers: Sequence[float] | None, count: int) -> list[str]:
    """A trial's objective values, or one '-' per objective when it has none."""
    return [value(v) for v in numbers] if numbers else ["-"] * count


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None) -> None:
    """Print a Rich table of already formatted cells."""
    printed = Table(*columns, title=title)
    for row in rows:
        printed.add_row(*row)
    console.print(printed)
