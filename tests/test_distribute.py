"""The strategy of a run (tfadv/distribute.py) and its wiring into experiments/common.py.

A CPU split can be made once per process, before TensorFlow sets up its devices, and the
pytest process has set them up long before: every case that splits runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from experiments import common
from helpers import REPO_ROOT
from tfadv import distribute

TPU_VARIABLES = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "COLAB_TPU_ADDR", "TF_CONFIG")


@pytest.fixture
def plain_machine(monkeypatch, tmp_path):
    """No TPU (an empty PCI bus, no TPU variables), no TF_CONFIG: what this CPU machine is,
    also where a test runs on a TPU VM or inside a cluster."""
    for variable in TPU_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(distribute, "PCI_DEVICES", str(tmp_path / "no_pci"))


def fake_pci(root, *devices):
    """A sysfs PCI tree with one folder per (vendor, device) pair."""
    for i, (vendor, device) in enumerate(devices):
        folder = root / f"0000:00:{i + 4:02x}.0"
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "device").write_text(device + "\n")
    return str(root)


def run_python(script, *args, env=None, expect=0, timeout=300):
    full_env = {k: v for k, v in os.environ.items()  # TFADV_DEBUG would show tracebacks
                if k != "TFADV_DEBUG" and k not in TPU_VARIABLES}
    full_env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO_ROOT), **(env or {}))
    proc = subprocess.run([sys.executable, str(script), *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == expect, (f"exit status {proc.returncode}:\n{proc.stdout[-3000:]}"
                                       f"\n{proc.stderr[-5000:]}")
    return proc


# --------------------------------------------------------------------------- in this process

def test_auto_without_cpu_replicas_is_one_replica_here(plain_machine):
    if len(tf.config.list_physical_devices("GPU")) > 1:
        pytest.skip("several GPUs: auto mirrors over them")
    strategy = distribute.choose("auto")
    assert strategy is distribute.choose("auto") is distribute.current()
    described = distribute.describe(strategy)
    assert described["replicas"] == 1 and described["workers"] == 1
    if tf.config.list_physical_devices("GPU"):
        assert described["strategy"] == "one_device"
    else:  # TensorFlow's default strategy: the same computation as no strategy at all
        assert strategy is tf.distribute.get_strategy()
        assert described == {"strategy": "default", "class": "_DefaultDistributionStrategy",
                             "replicas": 1, "devices": ["/device:CPU:0"], "workers": 1}
    assert json.loads(json.dumps(described)) == described
    assert distribute.global_batch(32, strategy) == 32
    with pytest.raises(ValueError, match="per_replica batch size must be an integer >= 1"):
        distribute.global_batch(0, strategy)


@pytest.mark.parametrize("name, cpu_replicas, tf_config, message", [
    ("tpu", None, None, "strategy 'tpu': no TPU found .* set TPU_NAME, or pass strategy 'auto'"),
    ("multiworker", None, None, "needs TF_CONFIG naming a cluster of more than one task "
     r"\(it names 0\)"),
    ("multiworker", None, {"cluster": {"worker": ["localhost:1"]},
                           "task": {"type": "worker", "index": 0}}, r"\(it names 1\)"),
    ("multiworker", None, "{not json", "TF_CONFIG is not JSON"),
    ("mirrored", None, None, "'mirrored' needs more than one device and 0 GPU.* pass "
     r"cpu_replicas=N \(--cpu_replicas=N, N >= 2\)"),
    ("gpu", None, None, "strategy must be one of .*'one_device', 'cpu'\\), got 'gpu'"),
    ("mirrored", 1, None, "cpu_replicas must be an integer >= 2, got 1"),
    ("auto", True, None, "cpu_replicas must be an integer >= 2, got True"),
    ("tpu", 2, None, "it does not apply to 'tpu': drop it or pass strategy 'mirrored'"),
])
def test_a_strategy_this_machine_cannot_give_is_a_clear_value_error(
        plain_machine, monkeypatch, name, cpu_replicas, tf_config, message):
    real = tf.config.list_physical_devices  # as on this CPU machine, wherever it runs
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [] if kind in ("GPU", "TPU") else real(kind))
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config if isinstance(tf_config, str)
                           else json.dumps(tf_config))
    before = distribute.current()
    with pytest.raises(ValueError, match=message):
        distribute.choose(name, cpu_replicas)
    assert distribute.current() is before  # a refused choice changes nothing


def test_cpu_replicas_after_tensorflow_set_up_its_devices_is_a_value_error(plain_machine):
    tf.constant(1.0).numpy()  # this process has certainly set up its devices now
    with pytest.raises(ValueError, match="cpu_replicas=2 came after TensorFlow set up its "
                                         "devices.*pass it before any TensorFlow work"):
        distribute.choose("mirrored", cpu_replicas=2)
    assert len(tf.config.list_logical_devices("CPU")) == 1


def test_auto_prefers_a_tpu_vm_and_then_a_multiworker_cluster(plain_machine, monkeypatch,
                                                              tmp_path):
    """The plan only (building would initialise TensorFlow's TPU system or a cluster)."""
    cluster = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "chief"}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert distribute._plan("auto", None) == ("multiworker", None)
    monkeypatch.setattr(distribute, "PCI_DEVICES", fake_pci(tmp_path, ("0x1ae0", "0x005e")))
    assert distribute._plan("auto", None) == ("tpu", "local")
    assert distribute._plan("auto", 2) == ("cpu_mirrored", 2)  # asked for: over any detection


def test_accelerators_see_a_tpu_before_tensorflow_lists_it(plain_machine, monkeypatch,
                                                           tmp_path):
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    assert distribute.accelerators() == gpus
    # Another Google PCI device (a gVNIC network card) is no TPU; two v4 chips are.
    monkeypatch.setattr(distribute, "PCI_DEVICES", fake_pci(
        tmp_path / "vm", ("0x1ae0", "0x0042"), ("0x1ae0", "0x005e"), ("0x1ae0", "0x005e"),
        ("0x8086", "0x005e")))
    assert distribute.accelerators() == gpus + ["TPU (local, 2 chips)"]
    monkeypatch.setattr(distribute, "PCI_DEVICES", str(tmp_path / "no_pci"))
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert distribute.accelerators() == gpus + ["TPU (grpc://10.0.0.2:8470)"]
    monkeypatch.setenv("TPU_NAME", "my-tpu")  # named: the resolver looks it up
    assert distribute.accelerators() == gpus + ["TPU (my-tpu)"]


def test_pick_preset_takes_the_accelerated_preset_on_a_tpu_vm(plain_machine, monkeypatch,
                                                              tmp_path):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU picks the accelerated preset anyway")
    assert common.pick_preset("paper", "quick", "it needs one")[0] == "quick"
    monkeypatch.setattr(distribute, "PCI_DEVICES", fake_pci(tmp_path, ("0x1ae0", "0x0063")))
    picked, why = common.pick_preset("paper", "quick", "it needs one")
    assert picked == "paper" and "TPU (local, 1 chip)" in why


@pytest.mark.parametrize("tf_config, chief", [
    (None, True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}},
     True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": "1"}}, False),
    ({"cluster": {"worker": ["a:1"], "evaluator": ["c:1"]}, "task": {"type": "evaluator"}},
     False),
    ({"cluster": {"worker": ["a:1"]}}, True),  # no task: this process is the only client
])
def test_is_chief_reads_tf_config(monkeypatch, tf_config, chief):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert distribute.is_chief() is chief


def test_is_chief_refuses_a_tf_config_that_is_not_an_object(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "[1, 2]")
    with pytest.raises(ValueError, match="TF_CONFIG must be a JSON object .* or unset it"):
        distribute.is_chief()


# --------------------------------------------------------------------------- subprocesses

PROBE = '''
"""An experiment in miniature: common.pick_preset first (as versatile_defense's main), then
common.start, then one step under the strategy it chose, and run.json."""
import json
import numpy as np
import tensorflow as tf
from experiments import common
from tfadv import distribute, report

PRESETS = {"tiny": {"data": "digits", "seed": 0, "precision": "float32"},
           "big": {"data": "digits", "seed": 0, "precision": "float32"}}

def main(argv):
    picked, _ = common.pick_preset("big", "tiny", "a probe")  # lists devices, sets none up
    config, out, timer = common.start(PRESETS, "probe", default_preset=picked)
    strategy = distribute.current()
    assert strategy is distribute.choose(config["strategy_name"], config["cpu_replicas"])
    assert strategy is distribute.choose("mirrored", config["cpu_replicas"])
    # Replica i holds rows [2i, 2i + 1] of 0..7 (global batch 4): the sum must be all of it.
    batch = distribute.global_batch(2, strategy)
    data = tf.data.Dataset.range(8).map(lambda v: tf.cast(v, tf.float32)).batch(batch)
    total = 0.0
    for rows in strategy.experimental_distribute_dataset(data):
        sums = strategy.run(tf.reduce_sum, args=(rows,))
        total += float(strategy.reduce("SUM", sums, axis=None))
    config["probe"] = {"total": total, "batch": batch}
    report.save_json(out / "run.json", report.run_info(config, timer.seconds))

common.main(main, "probe")
'''


def test_command_line_mirrors_over_cpu_replicas_and_records_it_in_run_json(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = run_python(script, "--strategy=mirrored", "--cpu_replicas=2",
                      f"--out={tmp_path / 'out'}")
    assert "strategy mirrored x 2" in proc.stdout
    config = json.loads((tmp_path / "out" / "run.json").read_text())["config"]
    assert config["preset"] == "tiny"  # no accelerator here: pick_preset ran before the split
    assert config["strategy_name"] == "mirrored" and config["cpu_replicas"] == 2
    assert config["strategy"] == {
        "strategy": "mirrored", "class": "MirroredStrategy", "replicas": 2, "workers": 1,
        "devices": ["/job:localhost/replica:0/task:0/device:CPU:0",
                    "/job:localhost/replica:0/task:0/device:CPU:1"]}
    assert config["probe"] == {"total": 28.0, "batch": 4}


def test_tpu_asked_for_without_one_is_one_line_and_status_2(plain_machine, monkeypatch,
                                                              capsys, tmp_path):
    """In-process, through common.main and common.start (the subprocess above shows the
    command line itself); flagsaver puts the flags back for the tests after this one."""
    from absl.testing import flagsaver
    monkeypatch.delenv("TFADV_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["probe", "--strategy=tpu", f"--out={tmp_path / 'out'}"])
    presets = {"tiny": {"data": "digits", "seed": 0, "precision": "float32"}}
    with flagsaver.flagsaver(), pytest.raises(SystemExit) as exit_info:
        common.main(lambda argv: common.start(presets, "probe", "tiny"), "probe")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("probe: error: strategy 'tpu': no TPU found")
    assert not (tmp_path / "out").exists()


WORKER = '''
import json
import tensorflow as tf
from tfadv import distribute
strategy = distribute.choose("auto")
ids = strategy.run(lambda: tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group,
                                   tf.float32) + 1.0)
print(json.dumps({"sum": float(strategy.reduce("SUM", ids, axis=None)),
                  "chief": distribute.is_chief(), **distribute.describe(strategy)}))
'''


@pytest.mark.slow
def test_auto_with_tf_config_runs_two_workers(tmp_path):
    """Two processes on this machine, one CPU replica each (about 30 s on 2 cores)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    env = {k: v for k, v in os.environ.items() if k not in TPU_VARIABLES}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO_ROOT))
    workers = [subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=dict(env, TF_CONFIG=json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": i}})))
        for i in range(2)]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for index, result in enumerate(results):
        assert result["strategy"] == "multiworker" and result["workers"] == 2
        assert result["replicas"] == 2 and result["sum"] == 3.0  # replica ids 0 and 1, plus 1
        assert result["chief"] is (index == 0)
        assert result["devices"] == [f"/job:worker/replica:0/task:{index}/device:CPU:0"]
