"""tfadv: adversarial attacks and defenses for image classifiers in TensorFlow/Keras.

TensorFlow is not among the package's requirements (a TPU VM's ``tensorflow-tpu`` and Colab's
own TensorFlow must not be replaced by a second one; setup.cfg): it is chosen with an extra,
``tfadv[cpu]``, ``tfadv[gpu]`` or ``tfadv[tpu]``. Without any, importing tfadv says so at once.
The check looks for the module without importing it: ``import tfadv`` stays fast.
"""

import importlib.util as _util

try:
    _missing = _util.find_spec("tensorflow") is None
except ValueError:  # imported already, without a spec (a stand-in module): present
    _missing = False
if _missing:
    raise ImportError(
        "tfadv needs TensorFlow (>= 2.16), and no 'tensorflow' module is installed. Install "
        "tfadv with the extra for your machine: pip install \"tfadv[cpu] @ git+URL\" (CPU), "
        "\"tfadv[gpu] @ git+URL\" (NVIDIA GPU; CUDA comes from pip) or \"tfadv[tpu] @ "
        "git+URL\" (Cloud TPU VM: tensorflow-tpu); from a checkout, pip install -e \".[cpu]\" "
        "(or [gpu], [tpu]) or pip install -r requirements.txt.", name="tensorflow")

del _util, _missing
