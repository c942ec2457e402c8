"""The `templates` commands: a study's template pool, its proposals and lineage (rows from `queries`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from promptsearch.cli.common import DEFAULT_URL, DbOption, console, table, value, values
from promptsearch.errors import UserError

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

    from promptsearch.queries import StudyTemplates, TemplateStanding
    from promptsearch.store.models import ProposalRow

templates_app = typer.Typer(no_args_is_help=True, help="A study's template pool, its proposals and lineage.")


def _templates(study: str, db: str) -> StudyTemplates:
    from promptsearch.queries import study_templates
    from promptsearch.study import open_study

    return study_templates(*open_study(study, db))


@templates_app.command("list")
def templates_list(study: str, db: DbOption = DEFAULT_URL) -> None:
    """The pool: every template with its origin, parents, trials and best score; then proposal counts."""
    pool = _templates(study, db)
    rows = [
        (
            str(s.template.id),
            s.template.name,
            s.template.family,
            s.template.origin if s.operator is None else f"{s.template.origin} ({s.operator})",
            ", ".join(map(str, s.template.parents)) or "-",
            str(len(s.trials)),
            str(s.finished),
            value(s.best),
        )
        for s in pool.templates
    ]
    table(("id", "name", "family", "origin", "parents", "trials", "finished", f"best {pool.objectives[0]}"), rows)
    if pool.proposals:
        counts = pool.proposal_counts().items()
        summary = ", ".join(f"{status}{' ' + reason if reason else ''} {n}" for (status, reason), n in counts)
        console.print(f"{len(pool.proposals)} proposal(s): {summary}")


@templates_app.command("show")
def templates_show(
    study: str, template: Annotated[str, typer.Argument(help="Template id or name.")], db: DbOption = DEFAULT_URL
) -> None:
    """One template: its text, how it was proposed (operator, parents, feedback, DSPy prompt, response), its trials."""
    pool = _templates(study, db)
    standing = pool.find(template)
    if standing is None:
        raise UserError(f"study {study!r} has no template {template!r} (see `promptsearch templates list {study}`)")
    row = standing.template
    console.print(f"[bold]#{row.id} {row.name}[/bold] — family {row.family}, origin {row.origin}")
    console.print(row.text, markup=False, highlight=False)
    proposal = pool.proposal_of(row.id)
    if proposal is not None:
        _print_proposal(proposal)
    rows = [
        (
            str(t.number),
            t.state.name,
            *values(t.values, len(pool.objectives)),
            str(t.user_attrs.get("pruned_reason", "")),
        )
        for t in standing.trials
    ]
    table(("trial", "state", *pool.objectives, "note"), rows, title=f"trials of #{row.id}")


def _print_proposal(proposal: ProposalRow) -> None:
    """How a template was proposed: operator, model, parents, and the feedback, prompt and response."""
    console.print(
        f"\nproposed in round {proposal.round_index} by {proposal.operator} with {proposal.proposer_model}"
        f"@{proposal.proposer_revision} from template(s) {proposal.parent_template_ids or '-'} "
        f"(trials {proposal.parent_trials or '-'})"
    )
    for title, text in (
        ("feedback", proposal.feedback),
        ("prompt", "\n".join(m["content"] for m in proposal.prompt)),
        ("response", proposal.response),
    ):
        if text:
            console.print(f"--- {title}", highlight=False)
            console.print(text, markup=False, highlight=False)


@templates_app.command("lineage")
def templates_lineage(study: str, db: DbOption = DEFAULT_URL) -> None:
    """The family tree: each proposed template under its first parent (a crossover names its other parent)."""
    from rich.tree import Tree

    pool = _templates(study, db)
    tree = Tree(f"study {study}")
    _grow(tree, pool, None)
    console.print(tree)


def _grow(node: Tree, pool: StudyTemplates, parent: int | None) -> None:
    for child in pool.children(parent):
        _grow(node.add(_lineage_label(child, pool.objectives[0])), pool, child.template.id)


def _lineage_label(s: TemplateStanding, objective: str) -> Text:
    from rich.text import Text

    how = s.template.origin if s.operator is None else s.operator
    also = f" × #{', #'.join(map(str, s.crossed_with))}" if s.crossed_with else ""
    best = value(s.best)
    return Text(f"#{s.template.id} {s.template.name} [{how}{also}] best {objective} {best} ({len(s.trials)} trial(s))")
