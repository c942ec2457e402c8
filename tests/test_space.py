from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from promptsearch.errors import SpaceError, UserError
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import load_space
from promptsearch.templates import load_template_file, template_pool

FIVE_MISTAKES = """\
name: "bad name!"
objectives:
  - metric: proxy.accuracy
    direction: minimize
source: {format: embedded, path: lee_background, limit: 0}
mix_in: {format: embedded, path: lee_background}
heldout: {format: embedded, path: lee}
templates: {seeds: [faq]}
generators:
  - {name: a, backend: embedded, model: embedded}
  - {name: b, backend: endpoint, model: x, endpoint_url: "ftp://x"}
sampling:
  temperature: {low: 0.2, high: 2.5}
proxy: cpu-tiny
budget: {trials: 4}
"""


@pytest.mark.parametrize("name", ["quickstart.yaml", "finephrase.yaml"])
def test_shipped_spaces_are_valid(name: str) -> None:
    space = load_space(REPO / "search_spaces" / name)
    assert space.budget.trials >= 4
    assert Path(space.proxy).is_file()


def test_five_mistakes_give_five_located_messages(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(FIVE_MISTAKES)
    result = run_cli("space", "validate", str(path), cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(lines) == 5, result.stderr
    expected = ["name:", "objectives[0].metric:", "source.limit:", "generators[1]:", "sampling.temperature:"]
    for line, where in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: {where}"), line
        assert "(line " in line
    assert "sampling.temperature: high must be <= 2.0 (line 13)" in result.stderr


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    result = run_cli("space", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not valid YAML" in result.stderr


def test_missing_files_are_located(tmp_path: Path) -> None:
    text = (REPO / "search_spaces" / "quickstart.yaml").read_text()
    text = text.replace("proxy: cpu-tiny", "proxy: nowhere.yaml").replace(
        "seeds: [faq, table, math, tutorial]", "seeds: [faq]\n  files: [missing.txt]"
    )
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    joined = "\n".join(err.value.messages)
    assert "templates.files[0]: template file not found: missing.txt" in joined
    assert "proxy: proxy profile not found" in joined


def test_user_template_file_with_its_own_placeholder(tmp_path: Path) -> None:
    good = tmp_path / "format" / "glossary.md"
    good.parent.mkdir()
    good.write_text("List the key terms of this text with definitions. Output only the list.\n\n[TEXT]")
    template = load_template_file(good, "[TEXT]")
    assert template.text.endswith("{document}") and template.family == "format"
    bad = tmp_path / "twice.md"
    bad.write_text("[TEXT] and again [TEXT]")
    with pytest.raises(UserError, match=r"twice.md: template must contain \[TEXT\] exactly once"):
        load_template_file(bad, "[TEXT]")
    unknown = tmp_path / "unknown.md"
    unknown.write_text("Rewrite for {audience}: {document}")
    with pytest.raises(UserError, match=r"unknown placeholder\(s\) \{audience\}"):
        load_template_file(unknown, "{document}")


def test_seed_pool_is_valid_and_distinct() -> None:
    from promptsearch.space import TemplatePoolSpec

    pool = template_pool(TemplatePoolSpec(seeds=list(SEED_TEMPLATES)))
    assert len(pool) == len(SEED_TEMPLATES) == 11
    for t in pool:
        assert t.text.rstrip().endswith("{document}")
        assert "Output only" in t.text


@pytest.mark.parametrize(
    ("metric", "direction", "accepted"),
    [
        ("proxy.score", "maximize", True),
        ("proxy.knowledge_bpb", "minimize", True),
        ("proxy.knowledge_prob", "maximize", True),
        ("proxy.heldout_bpb", "minimize", False),  # held-out text is not paired with the rephrased documents
        ("proxy.knowledge_bpb", "maximize", False),
    ],
)
def test_wilcoxon_needs_an_objective_it_can_pair(tmp_path: Path, metric: str, direction: str, accepted: bool) -> None:
    space = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
    space |= {"objectives": [{"metric": metric, "direction": direction}], "pruner": {"kind": "wilcoxon"}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    if accepted:
        assert load_space(path).pruner is not None
    else:
        with pytest.raises(SpaceError) as err:
            load_space(path)
        assert any("wilcoxon compares rephrased documents" in m for m in err.value.messages)


def test_sciq_source_and_suite_weights_are_checked_against_the_profile(tmp_path: Path) -> None:
    """The SciQ passages are a source a space can name; suite task names and `suite.*` weights are checked
    against the proxy profile when the space is loaded, before any trial trains."""
    space = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
    space.pop("suite_objective")  # its tasks are the bundled profile's; this test writes its own profile
    space |= {
        "objectives": [{"metric": "proxy.score", "direction": "maximize"}],
        "source": {"format": "embedded", "path": "sciq", "limit": 12},
        "proxy_weights": {"knowledge_bpb": -1.0, "suite.macro.gold_bpb": -1.0},
        "proxy": "profile.yaml",
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    profile = yaml.safe_load((REPO / "proxies" / "cpu-tiny.yaml").read_text())
    profile.pop("suite")
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert any("profile.yaml scores no suite (no `suite:`)" in m for m in err.value.messages)
    profile |= {"suite": {"tasks": ["arc_cf:easy", "arc:easy"]}, "lighteval_tasks": [{"name": "sciq", "kind": "sciq"}]}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert any("suite.tasks: unknown suite task(s) arc:easy (known: arc_cf:easy" in m for m in err.value.messages)
    profile["suite"]["tasks"] = ["arc_cf:easy", "piqa_cf"]
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    loaded = load_space(path)
    assert loaded.source.path == "sciq" and loaded.proxy_weights["suite.macro.gold_bpb"] == -1.0
