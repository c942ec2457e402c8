"""The study lifecycle on Optuna: create from a space file, start/resume N trials with K workers.

The validated space is stored in the study's user attrs, so a study carries its own definition.
Templates enter as enqueued trials with `template_id` in user attrs; Optuna's sampler picks the
fixed-shape knobs. Workers claim each trial of the budget as a slot in `ps_trial_slots` before starting it
(`claim_trial_slot`), so several workers never run more trials than the budget. A worker killed mid-trial
is caught by Optuna's heartbeat and its trial re-run once with the same template and params
(`RetryHeartbeatStaleTrialCallback`); a worker cancelled with SIGTERM fails its trial and queues that re-run
itself (`WorkerCancelled`); a trial stopped by Ctrl-C is re-enqueued the next time the study starts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import os
import signal
import statistics
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from promptsearch.corpus import check_space_corpora, read_corpus
from promptsearch.dashboard import queue_for_review, review_study_name, save_note, study_note, trial_note
from promptsearch.errors import UserError
from promptsearch.measure import Embedder, QualityClassifier
from promptsearch.objectives import FINISHED
from promptsearch.proxy import Mixture, calibration_mixture
from promptsearch.proxy_profile import ProxyProfile, load_proxy_profile, proxy_profile_path
from promptsearch.pruning import build_pruner
from promptsearch.recipe import trial_recipe
from promptsearch.rephrase import GeneratorServers
from promptsearch.space import SearchSpace, SuiteObjectiveSelection, load_space, study_name_problem
from promptsearch.store import Store, redact
from promptsearch.store.database import RETRY_LOST_TRIAL
from promptsearch.store.models import ProxyCalibrationRow
from promptsearch.suite import CATEGORIES, request_categories, suite_objective
from promptsearch.templates import template_pool
from promptsearch.trial import Corpora, ProxyStage, TrialContext, WorkerResources, build_stages, run_trial

SPACE_ATTR = "space"
SUITE_OBJECTIVE_ATTR = "suite_objective"  # the `SuiteObjectiveSelection` resolved at `study create`
# Heartbeats, the stale-trial retry callback and metric names are marked experimental in Optuna 5;
# they are what studies here rely on, so the warnings only add noise.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Set by the CLI's Ctrl-C handler and by `stop_on_signal`: the worker stops after the current trial even if a
# library absorbed the KeyboardInterrupt that the handler raised.
STOP_REQUESTED = threading.Event()
# While set, a stop signal (SIGTERM on Slurm, Ctrl-C) only asks the worker to stop, and it does once this is
# cleared: from failing stale trials and claiming a slot to the start of the slot's trial, and from the trial's end
# until Optuna has recorded it. Raised there, the interrupt could leave a slot claimed without a trial, or a trial
# RUNNING without a heartbeat, which no worker would ever re-run.
SIGNALS_HELD = threading.Event()


class WorkerCancelled(KeyboardInterrupt):
    """A stop signal in a worker (`stop_on_signal`). A KeyboardInterrupt, so that library code catching Exception
    lets it through and Optuna marks a running trial FAIL at once; the worker then queues the trial's re-run itself
    instead of leaving it to the heartbeat's grace period. Its message says what became of the trial."""


def stop_on_signal(signum: int) -> None:
    """In a worker's main thread: `signum` (SIGTERM from scancel or a time limit) stops the worker at once, failing
    the trial it runs (its re-run queued by `_run_slots`), or, during the bookkeeping around a trial, when that is
    done."""

    def on_signal(_signum: int, _frame: object) -> None:
        STOP_REQUESTED.set()
        if not SIGNALS_HELD.is_set():
            raise WorkerCancelled("no trial was running")

    signal.signal(signum, on_signal)


@dataclass(frozen=True)
class RunOptions:
    """How `study start` runs: not part of the space, so the same study can run differently."""

    db_url: str
    workdir: Path
    workers: int = 1
    heartbeat_seconds: int = 30
    grace_seconds: int = 90


def _load(store: Store, name: str, heartbeat: int | None = None, grace: int | None = None) -> optuna.Study:
    storage = store.optuna_storage(heartbeat, grace)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError as exc:
        raise UserError(f"no study named {name!r} in {redact(store.url)} (see `promptsearch study list`)") from exc


def study_space(study: optuna.Study) -> SearchSpace:
    attrs = study.user_attrs
    if "form_registered" in attrs:  # dashboard.queue_for_review's study of human ratings
        raise UserError(f"study {study.study_name!r} holds human ratings of another study's trials, not a space")
    if SPACE_ATTR not in attrs or "template_ids" not in attrs:
        # only a create that failed part-way (before creation was all or nothing) leaves such a study
        raise UserError(
            f"study {study.study_name!r} was never fully created (no space or templates); remove it with "
            f"`promptsearch study delete {study.study_name}` and create it again"
        )
    return SearchSpace.model_validate(attrs[SPACE_ATTR])


def suite_objective_selection(study: optuna.Study) -> SuiteObjectiveSelection | None:
    """The suite tasks `proxy.suite_objective` reads in this study, as `study create` resolved them (None when no
    objective is `proxy.suite_objective`)."""
    stored = study.user_attrs.get(SUITE_OBJECTIVE_ATTR)
    return None if stored is None else SuiteObjectiveSelection.model_validate(stored)


def trial_mixture(study: optuna.Study, store: Store, number: int | None = None) -> Mixture:
    """A finished trial's proxy mixture (default: the best trial's), rebuilt from its stored outputs: what
    `proxy calibrate --study` trains with several seeds to measure the noise around a real recipe."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if number is None:
        if len(study.directions) > 1:
            raise UserError("a multi-objective study has no single best trial; pass --trial N")
        if not complete:
            raise UserError(f"study {study.study_name!r} has no finished trial to calibrate on")
        number = study.best_trial.number
    trial = next((t for t in complete if t.number == number), None)
    if trial is None:
        raise UserError(f"study {study.study_name!r} has no finished trial {number}")
    outputs = {doc_id: row.text for doc_id, row in store.selected_outputs(study.study_name, number)}
    return calibration_mixture(study_space(study), outputs, trial_recipe(trial).mix_ratio)


def create_study(space_file: Path, db_url: str, name: str | None = None) -> optuna.Study:
    """A new study from a space file, its templates enqueued; all or nothing: a study whose set-up fails
    part-way is deleted again, so a fixed space file can be created under the same name."""
    if name is not None and (problem := study_name_problem(name)):
        raise UserError(problem)
    space = load_space(space_file)
    if name:
        space = space.model_copy(update={"name": name})
    # Everything that reads files or can be refused is done before the study exists.
    check_space_corpora(space, space_file)
    pool = template_pool(space.templates)
    pruner = build_pruner(space.pruner, space.eval_checkpoints())
    store = Store.open(db_url)
    storage = store.optuna_storage()
    if space.name in {s.study_name for s in storage.get_all_studies()}:
        raise UserError(f"study {space.name!r} already exists in {redact(db_url)}; start it or delete it first")
    selection = None
    if space.uses_suite_objective:
        selection = resolve_suite_objective(space, store)
    study = optuna.create_study(
        study_name=space.name,
        storage=storage,
        directions=[o.direction for o in space.objectives],
        sampler=optuna.samplers.TPESampler(seed=space.seed),
        pruner=pruner,
    )
    try:
        study.set_metric_names([o.metric for o in space.objectives])
        study.set_user_attr(SPACE_ATTR, space.model_dump(mode="json"))
        if selection is not None:
            study.set_user_attr(SUITE_OBJECTIVE_ATTR, selection.model_dump(mode="json"))
        origin = {t.name: "seed" if t.name in space.templates.seeds else "file" for t in pool}
        ids = [store.add_template(t.name, t.family, t.text, t.text_hash, origin[t.name]) for t in pool]
        study.set_user_attr("template_ids", ids)
        _enqueue_templates(study, ids, len(ids))
    except BaseException:
        optuna.delete_study(study_name=space.name, storage=storage)
        raise
    return study


def study_for(name_or_space: str, db_url: str) -> str:
    """The name of the study `name_or_space` stands for: a study name, or a space file whose study is
    created on first use."""
    if not (name_or_space.endswith((".yaml", ".yml")) or Path(name_or_space).is_file()):
        return name_or_space
    name = load_space(name_or_space).name
    try:
        open_study(name, db_url)
    except UserError:
        create_study(Path(name_or_space), db_url)
    return name


def _enqueue_templates(study: optuna.Study, template_ids: list[int], count: int) -> None:
    """Enqueue `count` trials, templates least tried first (round robin over the pool)."""
    tried = Counter(t.user_attrs.get("template_id") for t in study.get_trials(deepcopy=False))
    for _ in range(count):
        template_id = min(template_ids, key=lambda i: (tried[i], template_ids.index(i)))
        tried[template_id] += 1
        study.enqueue_trial({}, user_attrs={"template_id": template_id})


def _requeue_interrupted(study: optuna.Study) -> int:
    """Trials failed by Ctrl-C get one re-run with the same params and template."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    count = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            attrs = {k: v for k, v in t.user_attrs.items() if k == "template_id"} | {"retry_of": t.number}
            study.enqueue_trial(t.params, user_attrs=attrs)
            count += 1
    return count


def finished_count(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def artifacts_dir(workdir: Path) -> Path:
    """Where every study's artifacts (metrics JSON, plots, samples) live, named by uuid; one folder, so
    `promptsearch dashboard --workdir` serves all the studies of a database."""
    return workdir / "artifacts"


def artifact_store(workdir: Path) -> FileSystemArtifactStore:
    folder = artifacts_dir(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


class _Objective:
    def __init__(self, study: optuna.Study, store: Store, generators: GeneratorServers, options: RunOptions):
        self.space = study_space(study)
        self.study = study
        self.store = store
        self.resources = WorkerResources(
            generators=generators,
            embedder=Embedder() if self.space.measure.embeddings else None,
            classifiers=[QualityClassifier(c) for c in self.space.measure.classifiers],
            artifacts=artifact_store(options.workdir),
        )
        self.options = options
        self.stages = build_stages(self.space, suite_objective_selection(study))
        source = read_corpus(self.space.source)
        self.corpora = Corpora(
            source=source.documents,
            source_skipped=dict(source.skipped),
            mix_in=[d.text for d in read_corpus(self.space.mix_in).documents],
            heldout=[d.text for d in read_corpus(self.space.heldout).documents],
        )
        self.template_ids: list[int] = study.user_attrs["template_ids"]
        self.slot = -1  # the budget slot claimed for the next trial (`_run_slots`)
        self.trial_number: int | None = None  # the trial it runs

    def trial_dir(self, number: int) -> Path:
        return self.options.workdir / self.study.study_name / f"trial-{number}"

    def preload(self) -> None:
        """Load what the first trial would load only after the generator server is up (the embedding model;
        optuna_dashboard, for the notes written after each trial; lighteval when a proxy rung scores the benchmark
        suite: seconds each) on the core the server's start leaves idle. Run in a background thread; a failure
        here is left to the trial, which meets it again and reports it in one line."""
        try:
            import optuna_dashboard  # noqa: F401  # see `dashboard.save_note`

            if self.resources.embedder is not None:
                self.resources.embedder.load()
            if any(isinstance(stage, ProxyStage) and stage.scores_suite for stage in self.stages):
                from promptsearch.suite import preload

                preload()
        except Exception:  # see the docstring
            pass

    def __call__(self, trial: optuna.Trial) -> list[float]:
        self.store.start_trial_slot(self.study.study_name, self.slot, trial.number)
        self.trial_number = trial.number
        SIGNALS_HELD.clear()
        try:
            if STOP_REQUESTED.is_set():  # a stop signal held since the slot's claim
                raise WorkerCancelled("no trial was running")
            return self._run(trial)
        except WorkerCancelled:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            SIGNALS_HELD.set()

    def _run(self, trial: optuna.Trial) -> list[float]:
        template_id = trial.user_attrs.get("template_id")
        if template_id is None:  # a trial Optuna created itself once the queue ran dry
            template_id = self.template_ids[trial.number % len(self.template_ids)]
            trial.set_user_attr("template_id", template_id)
        if job := os.environ.get("SLURM_JOB_ID"):  # a worker running as a Slurm job (promptsearch.cluster)
            trial.set_user_attr("slurm_job_id", job)
        row = self.store.template(int(template_id))
        recipe = self.space.suggest_recipe(trial, row.id, row)
        trial.set_user_attr("recipe", recipe.model_dump(mode="json"))
        save_note(trial, trial_note(recipe, row))
        trial.set_user_attr("recipe_fingerprint", recipe.fingerprint())
        ctx = TrialContext(
            study_name=self.study.study_name,
            trial=trial,
            recipe=recipe,
            family=row.family,
            corpora=self.corpora,
            store=self.store,
            resources=self.resources,
            workdir=self.trial_dir(trial.number),
        )
        return run_trial(ctx, self.stages, self.space)


def _tokens_used_up(space: SearchSpace, store: Store, name: str) -> bool:
    if not space.budget.generated_tokens:
        return False
    used = sum(m.get("rephrase.completion_tokens", 0) for m in store.study_metrics(name).values())
    return used >= space.budget.generated_tokens


def claim_trial_slot(study: optuna.Study, store: Store, budget: int) -> int | None:
    """A slot for one more trial, or None when the budget is taken. The budget counts trials that did not fail:
    every FAIL trial (a lost worker's, a Ctrl-C's) gave its slot and adds one more, which its re-run (or a new
    trial) takes; RUNNING, WAITING-to-run and finished trials each hold theirs. The unique (study, slot) of
    `ps_trial_slots` makes the claim atomic across workers, where counting trials and then starting one was not:
    two workers finishing together could both see room for the last trial."""
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    return store.claim_trial_slot(study.study_name, budget + failed)


def _fill_queue(study: optuna.Study) -> None:
    """With a slot claimed and nothing waiting (a re-run, a proposed template), queue the template least tried."""
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        _enqueue_templates(study, study.user_attrs["template_ids"], 1)


def _requeue_cancelled(study: optuna.Study, number: int | None) -> str:
    """After a SIGTERM: the trial it interrupted is FAIL already (Optuna's handling of a KeyboardInterrupt); queue
    its re-run now, as the heartbeat would after its grace period. Returns what became of the trial."""
    failed = [t for t in study.get_trials(states=(TrialState.FAIL,)) if t.number == number]
    if not failed:
        return "no trial was running"
    RETRY_LOST_TRIAL(study, failed[0])
    return f"trial #{number} failed and is queued for a re-run"


def _release_signals(_study: optuna.Study, _trial: FrozenTrial) -> None:
    """The first callback after a trial, which Optuna has recorded by now: a stop signal held meanwhile acts."""
    SIGNALS_HELD.clear()
    if STOP_REQUESTED.is_set():
        raise WorkerCancelled("no trial was running")


def run_worker(name: str, options: RunOptions, worker_index: int = 0) -> None:
    """One worker process: claim a slot of the study's budget, run one trial in it, until the budget is taken."""
    store = Store.open(options.db_url, create_if_empty=False)
    study = _load(store, name, options.heartbeat_seconds, options.grace_seconds)
    space = study_space(study)
    # load_study would give an unseeded sampler: a single-worker study is reproducible from the space's
    # seed, and each of several workers gets its own stream.
    study.sampler = optuna.samplers.TPESampler(seed=space.seed + worker_index)
    study.pruner = build_pruner(space.pruner, space.eval_checkpoints())
    if finished_count(study) >= space.budget.trials:
        return
    log_dir = options.workdir / name / "logs"
    with GeneratorServers(log_dir) as generators:
        if len(space.generators) == 1:  # the one every trial uses: it loads while the worker sets up
            generators.prestart(space.generators[0])
        objective = _Objective(study, store, generators, options)
        threading.Thread(target=objective.preload, name="preload", daemon=True).start()
        # Proposals run after a trial, before the next slot's `_fill_queue`: a round's new templates run next.
        proposals: list[Callable[[optuna.Study, FrozenTrial], None]] = []
        if space.proposal.enabled:
            from promptsearch.propose import ProposalLoop  # imports DSPy: only for studies that propose

            loop = ProposalLoop(name, store, space, options.workdir, objective.corpora.source, generators)
            proposals.append(loop)
        callbacks = [
            *proposals,
            lambda s, _: save_note(s, study_note(s, store, objective_noise(s, store))),
            *(
                [
                    lambda s, t: queue_for_review(
                        s, store, t, objective.trial_dir(t.number), objective.resources.artifacts
                    )
                ]
                if space.human_review
                else []
            ),
        ]
        try:
            # A worker out of slots checks for a running trial's end this often: seconds after the last trial ends,
            # it exits (two queries per check), without waiting for a long heartbeat interval.
            poll = min(options.heartbeat_seconds, 5)
            _run_slots(study, store, space, objective, [_release_signals, *callbacks], poll)
        finally:
            SIGNALS_HELD.clear()


def _run_slots(
    study: optuna.Study,
    store: Store,
    space: SearchSpace,
    objective: _Objective,
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]],
    poll_seconds: int,
) -> None:
    """Claim a slot, run one trial in it; until the budget is taken (and no running trial may hand a slot back),
    the wall time or token budget is used, or the worker is asked to stop."""
    wall = space.budget.wall_time_minutes
    deadline = time.monotonic() + wall * 60 if wall else None
    while not (
        STOP_REQUESTED.is_set()
        or (deadline is not None and time.monotonic() >= deadline)
        or _tokens_used_up(space, store, study.study_name)
    ):
        SIGNALS_HELD.set()
        # A silent worker's trial fails here (its re-run queued) before the slots are counted.
        optuna.storages.fail_stale_trials(study)
        slot = claim_trial_slot(study, store, space.budget.trials)
        if slot is None:
            SIGNALS_HELD.clear()
            running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            # A trial started in a slot beats its heartbeat, so it ends or goes stale; one Optuna created but no
            # objective ever started (its worker interrupted in between) has neither, and is not waited for.
            if not running & store.slot_trials(study.study_name):
                return
            # Every slot is taken, but a running trial may yet fail and hand its slot on: wait for its end.
            STOP_REQUESTED.wait(poll_seconds)
            continue
        _fill_queue(study)
        objective.slot, objective.trial_number = slot, None
        try:
            study.optimize(objective, n_trials=1, catch=(), callbacks=callbacks)
        except WorkerCancelled as exc:
            raise WorkerCancelled(_requeue_cancelled(study, objective.trial_number)) from exc


def _worker_entry(name: str, options: RunOptions, index: int, errors: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    stop_on_signal(signal.SIGINT)  # Ctrl-C reaches every worker process
    try:
        run_worker(name, options, index)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from exc


def prepare_run(store: Store, name: str, grace_seconds: int) -> optuna.Study:
    """Before workers start: re-queue trials interrupted by Ctrl-C, and free the slots of workers that died between
    claiming a slot and starting its trial (a live worker starts its trial within moments of the claim; one
    claimed longer than the heartbeat's grace period ago and still without a trial has no worker left)."""
    study = _load(store, name)
    _requeue_interrupted(study)
    store.release_unstarted_slots(name, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=grace_seconds))
    return study


def start_study(name: str, options: RunOptions, on_progress: Callable[[optuna.Study], None] | None = None) -> None:
    store = Store.open(options.db_url, create_if_empty=False)
    if options.workers > 1 and make_url(options.db_url).get_backend_name() == "sqlite":
        raise UserError(
            "SQLite cannot serve several workers: Optuna hands out enqueued trials with SELECT … FOR UPDATE, "
            "which SQLite lacks. Use PostgreSQL (--db postgresql+psycopg://user@host/db) or --workers 1."
        )
    study = prepare_run(store, name, options.grace_seconds)
    done = threading.Event()
    poller = threading.Thread(target=_poll, args=(study, on_progress, done), daemon=True) if on_progress else None
    if poller:
        poller.start()
    try:
        if options.workers == 1:
            run_worker(name, options)
        else:
            _run_processes(name, options)
    finally:
        done.set()
        if poller:
            poller.join()


def _poll(study: optuna.Study, on_progress: Callable[[optuna.Study], None], done: threading.Event) -> None:
    while not done.wait(1.0):
        on_progress(study)
    on_progress(study)


def _run_processes(name: str, options: RunOptions) -> None:
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    processes = [ctx.Process(target=_worker_entry, args=(name, options, i, errors)) for i in range(options.workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    if failures:
        raise UserError(f"{len(failures)} worker(s) failed; first: {failures[0]}")


def objective_noise(study: optuna.Study, store: Store) -> dict[str, float]:
    """The noise floor (std over training seeds) of each proxy objective, from the latest calibration of
    the study's proxy profile; `proxy.score` combines its parts' stds as if independent, and
    `proxy.suite_objective` is recomputed on each seed's run over the study's chosen tasks."""
    space = study_space(study)
    calibration = proxy_calibration(space, store)
    if calibration is None:
        return {}
    stds = {f"proxy.{k}": v for k, v in calibration.stds.items()}
    parts = [(w * calibration.stds[k]) ** 2 for k, w in space.proxy_weights.items() if k in calibration.stds]
    stds["proxy.score"] = sum(parts) ** 0.5
    if (selection := suite_objective_selection(study)) is not None:
        per_seed = [suite_objective(run, selection.choice.metric, selection.tasks) for run in calibration.runs]
        if None not in per_seed:  # a calibration made before the profile scored the suite has no suite scores
            stds["proxy.suite_objective"] = statistics.stdev(v for v in per_seed if v is not None)
    return {o.metric: stds[o.metric] for o in space.objectives if o.metric in stds}


def proxy_calibration(space: SearchSpace, store: Store) -> ProxyCalibrationRow | None:
    """The latest calibration of the space's proxy profile (`record_noise_floor`); None without a proxy or one."""
    if space.proxy is None:
        return None
    return store.latest_calibration(load_proxy_profile(Path(space.proxy)).name)


def calibration_setup(
    db_url: str, space_file: Path | None, study: str | None, trial: int | None, profile: str | None
) -> tuple[Store, Mixture, ProxyProfile]:
    """What `proxy calibrate` trains: a finished trial's mixture (with `study`; `trial` defaults to the best)
    or the source documents of `space_file`, and the proxy profile (default: the space's)."""
    if study is not None:
        loaded, store = open_study(study, db_url)
        space = study_space(loaded)
        mixture = trial_mixture(loaded, store, trial)
    else:
        if space_file is None:
            raise UserError("pass either --space FILE or --study NAME")
        space = load_space(space_file)
        store = Store.open(db_url)
        mixture = calibration_mixture(space)
    reference = profile or space.proxy
    if reference is None:
        raise UserError("the space has no proxy profile; pass --profile cpu-tiny")
    return store, mixture, load_proxy_profile(proxy_profile_path(reference, Path.cwd()))


def record_noise_floor(store: Store, profile: ProxyProfile, runs: list[dict[str, float]]) -> ProxyCalibrationRow:
    """The noise floor from one mixture trained with several seeds (`runs`: one score dict per seed): each
    score's mean and std, stored as the profile's latest calibration, which `objective_noise` reads."""
    row = ProxyCalibrationRow(
        profile=profile.name,
        profile_hash=hashlib.sha256(profile.model_dump_json().encode()).hexdigest(),
        seeds=len(runs),
        means={k: statistics.fmean(r[k] for r in runs) for k in runs[0]},
        stds={k: statistics.stdev(r[k] for r in runs) for k in runs[0]},
        runs=runs,
    )
    store.add_calibration(row)
    return row


def delete_study(name: str, db_url: str) -> None:
    store = Store.open(db_url, create_if_empty=False)
    _load(store, name)
    storage = store.optuna_storage()
    optuna.delete_study(study_name=name, storage=storage)
    if review_study_name(name) in {s.study_name for s in storage.get_all_studies()}:
        optuna.delete_study(study_name=review_study_name(name), storage=storage)
    store.delete_study_rows(name)


def open_study(name: str, db_url: str) -> tuple[optuna.Study, Store]:
    store = Store.open(db_url, create_if_empty=False)
    return _load(store, name), store


# ------------------------------------------------------------------------------------ suite signal

# The SNR `study status` lists tasks above when the space sets no `suite_objective.min_snr`: a recipe spread of
# twice the seed noise, the margin below which the exported cards call differences not meaningful.
DEFAULT_MIN_SNR = 2.0
SuiteRowKind = Literal["task", "category", "aggregate"]  # aggregate: macro and micro
SUITE_PREFIX = "proxy.suite."  # a trial's final suite scores; `proxy.rung<r>.…` holds the lower rungs' and checkpoints'


@dataclass(frozen=True)
class SuiteSignalRow:
    """One suite score of a study: how much it moves between recipes against how much between training seeds."""

    name: str  # a task's requested name (arc_cf:easy), a category (GK), or macro / micro
    kind: SuiteRowKind
    category: str | None  # a task's category and a category row's own; None for macro and micro
    metric: str  # prob_norm_token, acc_norm_token, gold_bpb
    signal: float | None  # std of its final value over the study's COMPLETE trials; None below 2 trials
    noise: float | None  # its std over training seeds, from the latest calibration of the study's proxy profile
    snr: float | None  # signal / noise; None without either (or with a zero noise)


@dataclass(frozen=True)
class SuiteSignal:
    study: str
    profile: str  # the proxy profile whose calibration gives the noise
    trials: int  # COMPLETE trials with suite scores (the signal's sample)
    calibration_seeds: int | None  # seeds of that calibration; None: the profile has none yet
    rows: list[SuiteSignalRow]  # per metric: the tasks by category, then the categories, macro and micro

    def tasks_at_least(self, metric: str, min_snr: float) -> list[str]:
        """The tasks (not categories, macro or micro) whose SNR on `metric` is at least `min_snr`."""
        return [
            r.name
            for r in self.rows
            if r.kind == "task" and r.metric == metric and r.snr is not None and r.snr >= min_snr
        ]


def suite_signal(study: optuna.Study, store: Store) -> SuiteSignal | None:
    """Per suite score (task, category, macro, micro; each metric) of the study: signal = the std of its final value
    over the COMPLETE trials, noise = its std in the latest calibration of the study's proxy profile, and their
    ratio. None when no complete trial has suite scores."""
    complete = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    finals = [
        {k.removeprefix("proxy."): v for k, v in metrics.items() if k.startswith(SUITE_PREFIX)}
        for number, metrics in store.study_metrics(study.study_name).items()
        if number in complete
    ]
    finals = [f for f in finals if f]
    if not finals:
        return None
    category_of = request_categories()
    space = study_space(study)
    assert space.proxy is not None  # suite scores come from a proxy profile
    calibration = proxy_calibration(space, store)
    rows = []
    for key in {k for f in finals for k in f}:
        _, name, metric = key.split(".")  # suite.<name>.<metric>: task names hold ':' and '_', never '.'
        values = [f[key] for f in finals if key in f]
        signal = statistics.stdev(values) if len(values) >= 2 else None
        noise = None if calibration is None else calibration.stds.get(key)
        kind: SuiteRowKind
        if name in category_of:
            kind, category = "task", category_of[name]
        elif name in CATEGORIES:
            kind, category = "category", name
        else:
            kind, category = "aggregate", None
        snr = signal / noise if signal is not None and noise else None
        rows.append(SuiteSignalRow(name, kind, category, metric, signal, noise, snr))
    kinds = get_args(SuiteRowKind)
    rows.sort(key=lambda r: (r.metric, kinds.index(r.kind), CATEGORIES.index(r.category) if r.category else 0, r.name))
    return SuiteSignal(
        study=study.study_name,
        profile=load_proxy_profile(Path(space.proxy)).name,
        trials=len(finals),
        calibration_seeds=None if calibration is None else calibration.seeds,
        rows=rows,
    )


def resolve_suite_objective(space: SearchSpace, store: Store) -> SuiteObjectiveSelection:
    """The tasks `proxy.suite_objective` will read for a new study of `space`: its `suite_objective.tasks` (`all`:
    the proxy profile's `suite.tasks`), kept, with `min_snr`, where their SNR on `snr_study` (`suite_signal`) is
    at least `min_snr`. Raises `UserError` when `snr_study` cannot measure SNR or no task is left."""
    choice = space.suite_objective
    assert choice is not None and space.proxy is not None  # the space's validators: the objective needs both
    suite = load_proxy_profile(Path(space.proxy)).suite
    assert suite is not None  # `load_space` checked that the profile scores the suite
    tasks = suite.tasks if choice.tasks == "all" else choice.tasks
    if choice.snr_study is not None and choice.min_snr is not None:
        source, _ = open_study(choice.snr_study, store.url)
        signal = suite_signal(source, store)
        if signal is None or signal.trials < 2:
            trials = 0 if signal is None else signal.trials
            raise UserError(
                f"suite_objective.snr_study {choice.snr_study!r} has {trials} complete trial(s) with suite scores; "
                "its SNR needs at least 2"
            )
        if signal.calibration_seeds is None:
            raise UserError(
                f"suite_objective.snr_study {choice.snr_study!r} has no calibration of its proxy profile "
                f"{signal.profile}: run `promptsearch proxy calibrate --study {choice.snr_study}` first"
            )
        above = signal.tasks_at_least(choice.metric, choice.min_snr)
        if not (kept := [t for t in tasks if t in above]):
            raise UserError(
                f"suite_objective leaves no task: none of {', '.join(tasks)} has an SNR on {choice.metric} of at "
                f"least {choice.min_snr} in study {choice.snr_study!r}"
            )
        tasks = kept
    return SuiteObjectiveSelection(choice=choice, tasks=list(tasks))
