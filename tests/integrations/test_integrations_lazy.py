"""The adapters import their extras lazily, and the core never imports the adapters.

Runs with or without the extras installed: each check starts a fresh
interpreter so ``sys.modules`` shows exactly what an import pulled in.
"""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def keras_refusal(prelude: str) -> str:
    """What the Keras adapter's ConfigurationError says (``flatten_model``) in a fresh interpreter that
    first runs ``prelude``; the interpreter must exit cleanly."""
    code = prelude + (
        "from secagg.errors import ConfigurationError\n"
        "import secagg.integrations.keras as keras_adapter\n"
        "try:\n"
        "    keras_adapter.flatten_model(object())\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_core_never_imports_the_adapters_or_their_extras() -> None:
    # Prepare
    code = (
        "import sys, secagg, secagg.masking, secagg.encoding, secagg.wire, secagg.cli\n"
        "loaded = [m for m in ('secagg.integrations', 'torch', 'flwr', 'keras') if m in sys.modules]\n"
        "print(loaded)"
    )
    # Execute
    result = run_python(code)
    # Assert
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_torch_adapter_imports_torch_only_when_used() -> None:
    # Prepare
    code = "import sys, secagg.integrations.torch\nprint('torch' in sys.modules)"
    # Execute
    result = run_python(code)
    # Assert
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_keras_adapter_imports_keras_only_when_a_model_is_given() -> None:
    # Prepare: weight lists are plain numpy and need no Keras
    code = (
        "import sys, numpy as np, secagg.integrations.keras as adapter\n"
        "vector, layout = adapter.flatten_weights([np.ones((2, 2), dtype=np.float32)])\n"
        "print('keras' in sys.modules, adapter.unflatten_weights(vector, layout)[0].dtype)"
    )
    # Execute
    result = run_python(code)
    # Assert
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False float32"


def test_a_missing_extra_names_the_install_line() -> None:
    # Prepare: hide the extras as if they were not installed
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['flwr'] = None\n"
        "sys.modules['keras'] = None\n"
        "from secagg.errors import ConfigurationError\n"
        "import secagg.integrations.torch as adapter\n"
        "try:\n"
        "    adapter.flatten_state_dict({})\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
        "import secagg.integrations.keras as keras_adapter\n"
        "try:\n"
        "    keras_adapter.flatten_model(object())\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    from secagg.integrations.flower import SecAggGrid\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
        "import secagg.integrations.flower.protocol, secagg.integrations.flower.keys\n"
        "print('protocol and keys import without flwr')\n"
    )
    # Execute
    result = run_python(code)
    # Assert
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "this secagg integration needs the optional package 'torch': pip install -e '.[torch]' "
        "from the root of a secagg clone (secagg is not on the package index)",
        "this secagg integration needs the optional package 'keras': pip install -e '.[keras]' "
        "from the root of a secagg clone (secagg is not on the package index)",
        "this secagg integration needs the optional package 'flwr': pip install -e '.[flower]' "
        "from the root of a secagg clone (secagg is not on the package index)",
        "protocol and keys import without flwr",
    ]


def test_an_installed_extra_missing_its_own_dependency_names_that_dependency() -> None:
    # Prepare: Keras is installed, but the backend it is told to use (torch) is not
    prelude = (
        "import os, sys\n"
        "os.environ['KERAS_BACKEND'] = 'torch'\n"
        "sys.modules['torch'] = None\n"
    )
    # Execute
    message = keras_refusal(prelude)
    # Assert: the message names torch, the package actually missing, not keras, which is installed
    assert "'keras' is installed" in message and "'torch'" in message, message
    assert "needs the optional package 'keras'" not in message


def test_keras_without_a_backend_set_says_to_set_the_one_the_extra_installs() -> None:
    # Prepare: KERAS_BACKEND unset, so Keras reaches for its default, tensorflow, which the keras
    # extra does not install (it installs torch): "install tensorflow" alone would send the user
    # the wrong way
    prelude = (
        "import os, sys\n"
        "os.environ.pop('KERAS_BACKEND', None)\n"
        "sys.modules['tensorflow'] = None\n"
    )
    # Execute
    message = keras_refusal(prelude)
    # Assert
    assert "'tensorflow'" in message, message
    assert "KERAS_BACKEND is not set" in message, message
    assert 'os.environ.setdefault("KERAS_BACKEND", "torch")' in message, message
