"""The tf.distribute strategy of a run, chosen once, before TensorFlow sets up its devices.

``choose(name, cpu_replicas)`` returns the strategy; ``current()`` hands the same object to
code further down; ``describe(strategy)`` is what run.json records. Names:

- ``auto``: a TPU when one is reachable, else several workers when ``TF_CONFIG`` names more
  than one task, else all GPUs when there are several, else the one GPU, else the CPU.
- ``tpu``: TPUStrategy (a local TPU VM, or ``TPU_NAME`` / ``COLAB_TPU_ADDR``).
- ``mirrored``: MirroredStrategy over every GPU, or over ``cpu_replicas`` logical CPU devices
  (the same code path as on several GPUs, testable on a CPU-only machine).
- ``multiworker``: MultiWorkerMirroredStrategy from ``TF_CONFIG``.
- ``one_device``: the first GPU (the CPU when there is none).
- ``cpu``: the CPU only; GPUs are hidden from TensorFlow.

On one CPU or one GPU without a strategy asked for, the result is TensorFlow's default
strategy or a OneDeviceStrategy: code run under either computes what it computes without one,
so single-device numbers do not change.
"""

from __future__ import annotations

import functools
import glob
import json
import os
from pathlib import Path

from tfadv import checks

NAMES = ("auto", "tpu", "mirrored", "multiworker", "one_device", "cpu")

# TPU chips on a TPU VM's PCI bus (Google's vendor id, the device ids of TPU v2 to v6e and
# later as JAX's hardware_utils lists them). Reading sysfs is instant and starts nothing, so
# a TPU counts before TensorFlow lists any TPU device (it lists none until initialised).
PCI_DEVICES = "/sys/bus/pci/devices"
_GOOGLE_PCI_VENDOR = "0x1ae0"
_TPU_PCI_DEVICES = ("0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076")

_chosen = None  # the strategy of the last choose() call


def choose(name: str = "auto", cpu_replicas: int | None = None):
    """The strategy for ``name`` (see the module docstring); the same arguments give the same
    object. ``cpu_replicas=N`` (N >= 2, with ``mirrored`` or ``auto``) splits the host CPU into
    N logical devices, which TensorFlow allows only before it sets up its devices: call this
    before any other TensorFlow work. A name this machine cannot satisfy is a ValueError."""
    global _chosen
    _chosen = _build(*_plan(name, cpu_replicas))
    return _chosen


def current():
    """The strategy of the last ``choose`` call; TensorFlow's default one when none was made."""
    import tensorflow as tf
    return _chosen if _chosen is not None else tf.distribute.get_strategy()


def describe(strategy) -> dict:
    """What run.json records: kind, class, replicas, devices and workers (JSON-able)."""
    import tensorflow as tf
    kinds = ((tf.distribute.TPUStrategy, "tpu"),
             (tf.distribute.MultiWorkerMirroredStrategy, "multiworker"),
             (tf.distribute.MirroredStrategy, "mirrored"),
             (tf.distribute.OneDeviceStrategy, "one_device"))
    kind = next((k for cls, k in kinds if isinstance(strategy, cls)), "default")
    if kind == "default":  # no device list of its own: TensorFlow places ops on GPU:0 or CPU
        devices = ["/device:GPU:0" if tf.config.get_visible_devices("GPU") else "/device:CPU:0"]
    else:
        devices = list(strategy.extended.worker_devices)
    workers = 1
    if kind == "multiworker":
        workers = _count_tasks(strategy.cluster_resolver.cluster_spec().as_dict())
    elif kind == "tpu":
        workers = int(strategy.extended.num_hosts)
    return {"strategy": kind, "class": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync), "devices": devices,
            "workers": workers}


def is_chief() -> bool:
    """Whether this process writes caches and results: the ``chief`` task of ``TF_CONFIG``, or
    worker 0 in a cluster without a chief; True without ``TF_CONFIG`` (one process)."""
    config = _tf_config()
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind is None or kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in (config.get("cluster") or {})


def accelerators() -> list[str]:
    """The GPUs and TPUs this process could use, by name, without initialising anything: a
    TPU VM's chips count before TensorFlow lists them, and a ``TPU_NAME`` / ``COLAB_TPU_ADDR``
    names a remote one (not contacted here)."""
    import tensorflow as tf
    found = [d.name for kind in ("GPU", "TPU") for d in tf.config.list_physical_devices(kind)]
    if not any(":TPU:" in name for name in found):
        address = _tpu_address()
        if address == "local":
            chips = _pci_tpu_chips()
            found.append(f"TPU (local, {chips} chip{'s' * (chips != 1)})")
        elif address:
            found.append(f"TPU ({address})")
    return found


def global_batch(per_replica: int, strategy=None) -> int:
    """The batch a step consumes: ``per_replica`` examples on each replica of ``strategy``
    (the current one by default)."""
    per_replica = checks.integer("per_replica batch size", per_replica, minimum=1)
    strategy = current() if strategy is None else strategy
    return per_replica * int(strategy.num_replicas_in_sync)


# ---------------------------------------------------------------------------- choosing

def _plan(name: str, cpu_replicas) -> tuple[str, object]:
    """(what to build, its argument) for the arguments of ``choose``; raises for a name the
    machine cannot satisfy. Reads the environment and lists physical devices only."""
    import tensorflow as tf
    checks.one_of("strategy", name, NAMES)
    if cpu_replicas is not None:
        cpu_replicas = checks.integer("cpu_replicas", cpu_replicas, minimum=2)
        if name not in ("auto", "mirrored"):
            raise ValueError(f"cpu_replicas (--cpu_replicas) splits the CPU for strategy "
                             f"'mirrored' or 'auto'; it does not apply to {name!r}: drop it or "
                             "pass strategy 'mirrored'")
        return "cpu_mirrored", cpu_replicas
    if name in ("auto", "tpu"):
        address = _tpu_address()
        if address:
            return "tpu", address
        if name == "tpu":
            raise ValueError("strategy 'tpu': no TPU found (no TPU chip on this machine's PCI "
                             "bus, TensorFlow lists no TPU, TPU_NAME and COLAB_TPU_ADDR are "
                             "unset); run on a TPU VM or a Colab TPU runtime, set TPU_NAME, or "
                             "pass strategy 'auto'")
    if name in ("auto", "multiworker"):
        tasks = _count_tasks(_tf_config().get("cluster") or {})
        if tasks > 1:
            return "multiworker", None
        if name == "multiworker":
            raise ValueError(f"strategy 'multiworker' needs TF_CONFIG naming a cluster of more "
                             f"than one task (it names {tasks}); set TF_CONFIG on every worker "
                             "or pass strategy 'auto'")
    gpus = len(tf.config.list_physical_devices("GPU"))
    if name in ("auto", "mirrored") and gpus > 1:
        return "gpu_mirrored", None
    if name == "mirrored":
        raise ValueError(f"strategy 'mirrored' needs more than one device and {gpus} GPU(s) "
                         "are visible; pass cpu_replicas=N (--cpu_replicas=N, N >= 2) to "
                         "mirror over N CPU devices, or pass strategy 'auto'")
    if name == "cpu":
        return "cpu", gpus
    return ("one_gpu", None) if gpus else ("default", None)


@functools.lru_cache(maxsize=None)
def _build(kind: str, arg):
    """One strategy per plan, so that ``auto`` and the name it resolved to share it: the TPU
    system is initialised once and the CPU split once."""
    import tensorflow as tf
    if kind == "cpu_mirrored":
        _split_cpu(arg)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:arg]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "tpu":
        return _tpu_strategy(arg)
    if kind == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "gpu_mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "one_gpu":
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if kind == "cpu" and arg:  # hide the GPUs: code outside the strategy runs on the CPU too
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            raise ValueError(_too_late("strategy 'cpu' (which hides the GPUs)")) from None
    return tf.distribute.get_strategy()  # "cpu" and "default": no strategy at all


def _split_cpu(n: int) -> None:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:  # TensorFlow has set up its devices; an identical split passes
        raise ValueError(_too_late(f"cpu_replicas={n}")) from None


def _too_late(what: str) -> str:
    return (f"{what} came after TensorFlow set up its devices, which it does once per process; "
            "pass it before any TensorFlow work (the experiments' common.start does; in a "
            "notebook, call tfadv.distribute.choose first, after restarting the runtime)")


def _tpu_strategy(address: str):
    import tensorflow as tf
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (RuntimeError, tf.errors.OpError) as err:
        raise ValueError(f"a TPU was found ({address}) but TensorFlow could not initialise it "
                         f"({' '.join(str(err).split())[:300]}); on a TPU VM install "
                         "tensorflow-tpu, or pass strategy 'cpu'") from None
    return tf.distribute.TPUStrategy(resolver)


def _tpu_address() -> str | None:
    """The TPUClusterResolver's ``tpu`` argument for a reachable TPU, else None. A TPU VM is
    ``local`` (its TPU_NAME, if any, names the VM itself, not a TPU server)."""
    import tensorflow as tf
    if _pci_tpu_chips() or tf.config.list_physical_devices("TPU"):
        return "local"
    for variable in ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS"):
        if os.environ.get(variable):
            return os.environ[variable]
    if os.environ.get("COLAB_TPU_ADDR"):  # the former Colab TPU node: host:port of its server
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]
    return None


def _pci_tpu_chips() -> int:
    chips = 0
    for vendor in glob.glob(os.path.join(PCI_DEVICES, "*", "vendor")):
        try:
            if Path(vendor).read_text().strip() != _GOOGLE_PCI_VENDOR:
                continue
            device = (Path(vendor).parent / "device").read_text().strip()
        except OSError:
            continue
        chips += device in _TPU_PCI_DEVICES
    return chips


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not JSON ({err}); set it to "
                         '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 0}} '
                         "or unset it") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got "
                         f"{text[:100]!r}; fix it or unset it")
    return config


def _count_tasks(cluster: dict) -> int:
    """The processes that compute (chief and workers; an evaluator or ps does not replicate)."""
    return sum(len(cluster.get(kind) or ()) for kind in ("chief", "worker"))
