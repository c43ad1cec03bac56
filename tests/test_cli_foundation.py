import json
import subprocess
import sys

from conftest import REPO, TINY


def test_help_lists_commands(azr):
    r = azr("--help")
    assert r.code == 0
    for cmd in ("seed", "status", "config"):
        assert cmd in r.out


def test_help_does_not_import_torch():
    code = "import sys; sys.argv=['azr','--help']\nfrom azr_cli.main import main\ntry: main()\nexcept SystemExit: pass\nprint('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_seed_then_status_json(azr, tmp_path):
    run = tmp_path / "X"
    assert azr("seed", "--run", run, "--config", TINY).code == 0
    r = azr("status", "--run", run, "--json")
    assert r.code == 0
    info = json.loads(r.out)
    assert info["buffers"] == {"deduction": 1, "abduction": 1, "induction": 1}
    assert info["next"] == {"iteration": 1, "stage": "propose"}
    assert (run / "manifest.json").exists() and (run / "config.yaml").exists()
    seeds = [json.loads(x) for x in (run / "buffer" / "seed.jsonl").read_text().splitlines()]
    assert seeds[0]["program"] == "def f(a):\n    return a" and seeds[0]["outputs"] == ["'Hello world'"]
    assert len(seeds[2]["inputs"]) == 4 and seeds[2]["n_shown"] == 2  # tiny: N=4


def test_seed_refuses_existing_run(azr, tmp_path):
    assert azr("seed", "--run", tmp_path / "X", "--config", TINY).code == 0
    r = azr("seed", "--run", tmp_path / "X", "--config", TINY)
    assert r.code == 1 and "--force" in r.err
    assert azr("seed", "--run", tmp_path / "X", "--config", TINY, "--force").code == 0


def test_unknown_key_one_line_exit_1(azr, tmp_path):
    r = azr("seed", "--run", tmp_path / "X", "--set", "nosuch.key=1")
    assert r.code == 1
    assert "nosuch.key" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "X").exists()


def test_usage_error_exit_2(azr):
    assert azr("seed").code == 2
    assert azr("no-such-command").code == 2


def test_truncated_jsonl_reported_by_status(azr, tmp_path):
    run = tmp_path / "X"
    azr("seed", "--run", run, "--config", TINY)
    seed = run / "buffer" / "seed.jsonl"
    seed.write_bytes(seed.read_bytes()[:-20])
    r = azr("status", "--run", run)
    assert r.code == 1 and "seed.jsonl:3: truncated last line" in r.err


def test_status_of_missing_run(azr, tmp_path):
    r = azr("status", "--run", tmp_path / "nope")
    assert r.code == 1 and "not an azr run directory" in r.err


def test_config_show(azr, tmp_path):
    r = azr("config", "show", "--config", TINY, "--set", "run.seed=7", "--json")
    cfg = json.loads(r.out)
    assert r.code == 0 and cfg["run"]["seed"] == 7 and cfg["model"]["name"] == "builtin:tiny"
    assert "validate" in cfg
    r = azr("config", "show", "--docs", "--json")
    assert json.loads(r.out)["run.batch_size"]["doc"]


def test_status_human_table(azr, tmp_path):
    azr("seed", "--run", tmp_path / "X", "--config", TINY)
    r = azr("status", "--run", tmp_path / "X")
    assert r.code == 0 and "buffer deduction" in r.out
