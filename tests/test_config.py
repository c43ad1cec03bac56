from pathlib import Path

import pytest

from stages.config.layers import load_config, meaning_changes, parse_set, runtime_changes
from stages.config.schema import Config, field_docs, runtime_fields
from stages.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_shipped_configs_exist():
    assert any(p.name == "tiny.yaml" for p in CONFIGS)


def test_layers_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("run:\n  batch_size: 8\n  seed: 3\n")
    cfg = load_config(f, ["run.batch_size=16"], {"run": {"seed": 9}})
    assert cfg.run.batch_size == 16  # --set beats the file
    assert cfg.run.seed == 9  # a named flag beats --set
    assert cfg.model.adapter == "lora"  # the default stays


def test_set_values_are_yaml_typed():
    assert load_config(sets=["update.lr=1e-4"]).update.lr == 1e-4
    assert parse_set("run.batch_size=8") == (["run", "batch_size"], 8)
    assert parse_set("model.lora_target_modules=[q_proj, v_proj]")[1] == ["q_proj", "v_proj"]
    assert parse_set("log.wandb=true")[1] is True


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match="nosuch.key"):
        load_config(sets=["nosuch.key=1"])
    with pytest.raises(ConfigError, match="did you mean 'run.batch_size'"):
        load_config(sets=["run.batch_sise=1"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model:\n  adaptor: lora\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'model.adaptor'"):
        load_config(f)


def test_bad_value_says_what_and_how():
    with pytest.raises(ConfigError) as e:
        load_config(sets=["model.adapter=dora"])
    msg = str(e.value)
    assert "model.adapter" in msg and "'dora'" in msg and "--set model.adapter=" in msg
    assert "\n" not in msg


def test_cross_field_check():
    with pytest.raises(ConfigError, match="induction_shown"):
        load_config(sets=["propose.induction_inputs=4", "propose.induction_shown=4"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_text("run: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_field_has_a_docstring():
    missing = [k for k, v in field_docs().items() if not v]
    assert not missing, f"fields without a docstring: {missing}"


def test_runtime_vs_meaning_fields():
    a = load_config()
    b = load_config(sets=["model.device=cpu", "update.micro_batch_size=1"])
    c = load_config(sets=["model.name=other", "reward.trivial_task_reward=-0.5"])
    assert meaning_changes(a, b) == []
    assert runtime_changes(a, b) == {"model.device": "cpu", "update.micro_batch_size": 1}
    assert meaning_changes(a, c) == ["model.name", "reward.trivial_task_reward"]
    assert "model.device" in runtime_fields() and "model.name" not in runtime_fields()
    assert a.digest() == b.digest() != c.digest()


def test_induction_split_default():
    assert load_config().propose.shown == 5
