"""The lean install: inference needs no extra, and a command whose extra is missing says
which one to install in one line, with exit status 2.

A missing package is simulated in a fresh interpreter by a meta-path finder that refuses
the package's modules, exactly as Python reports a package that is not installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import _models
import pytest
from PIL import Image

from ailut_jax.cli._common import EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parents[1]

# Runs the `ailut` command line with the top-level modules named in argv[1] (comma
# separated) made unimportable; the command's own arguments follow.
BLOCKED_AILUT = """
import sys

class Uninstalled:
    def __init__(self, names):
        self.names = set(filter(None, names.split(",")))

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled(sys.argv[1]))
from ailut_jax.cli import main
sys.exit(main(sys.argv[2:]))
"""

# flax needs optax and orbax-checkpoint needs absl, so both come with the core install
# even though only training uses them directly.
CORE_BRINGS = {"optax", "absl"}
#: Modules that only the train, plot, convert and serve extras install.
EXTRA_ONLY = sorted(set(EXTRA_OF_MODULE) - CORE_BRINGS)


def _env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", AILUT_CACHE_DIR="off")
    env.pop("AILUT_DEBUG", None)
    return env


def ailut_without(modules, args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_AILUT, ",".join(modules), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=_env(),
    )


# Which extra each part of the package may rely on, besides the core dependencies.
EXTRA_OF_AREA = (
    ("ailut_jax/train/", "train"),
    ("ailut_jax/data/", "train"),
    ("ailut_jax/cli/train.py", "train"),
    ("ailut_jax/plot.py", "plot"),
    ("ailut_jax/convert.py", "convert"),
    ("ailut_jax/serve/", "serve"),
)


def _requirement_names(requirements) -> set[str]:
    names = set()
    for req in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names


def _imports(path: Path) -> set[str]:
    """Top-level third-party modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "ailut_jax"}


def test_every_third_party_import_is_declared_for_its_area():
    """A module imported by inference code is a core dependency; one imported only by
    training, plotting or conversion code is in that extra. So `pip install .` runs
    inference and `pip install ".[train]"` runs the main job."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _requirement_names(project["dependencies"])
    extras = {k: _requirement_names(v) for k, v in project["optional-dependencies"].items()}
    distributions = importlib.metadata.packages_distributions()
    checked = 0
    for path in sorted((ROOT / "ailut_jax").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        extra = next((e for area, e in EXTRA_OF_AREA if rel.startswith(area)), None)
        allowed = core | (extras[extra] if extra else set())
        for module in _imports(path):
            if module.startswith("_"):  # the package's own native modules
                continue
            names = _requirement_names(distributions.get(module, [module]))
            assert names & allowed, (
                f"{rel} imports {module} ({', '.join(sorted(names))}), which is not declared "
                f"in the core dependencies{f' or the {extra} extra' if extra else ''}"
            )
            checked += 1
    assert checked > 30


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _models.random_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("extras") / "photo.png"
    Image.fromarray(_models.photo(40, 32)).save(path)
    return path


def test_extras_named_by_the_cli_exist_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)
    core = " ".join(project["dependencies"]).lower()
    for name in ("matplotlib", "scikit-image", "tensorflow-datasets", "grain", "torch"):
        assert name not in core, f"{name} belongs in an extra, not the core install"
    # The test extra pulls in what the tests import (torch aside: the README's test
    # command installs the convert extra next to it).
    assert any(req.startswith("ailut-jax[") and "train" in req for req in extras["test"])


def test_import_and_inference_need_no_extra(model_dir, photo, tmp_path):
    """`import ailut_jax`, the inference modules and `ailut enhance` / `export-cube` run
    with every extra-only module missing."""
    code = (
        "import sys\n"
        "import ailut_jax, ailut_jax.enhance, ailut_jax.export_cube, ailut_jax.cube\n"
        "import ailut_jax.evaluate, ailut_jax.metrics, ailut_jax.cli\n"
        "from ailut_jax.cli import build_parser\n"
        "build_parser()\n"
        f"extra = {EXTRA_ONLY!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in extra))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout

    out = tmp_path / "out"
    proc = ailut_without(
        EXTRA_ONLY,
        ["enhance", "--checkpoint", model_dir, "--out", out, "--quiet", photo],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "photo.png").is_file()
    proc = ailut_without(
        EXTRA_ONLY,
        ["export-cube", "--checkpoint", model_dir, photo, "--size", 5, "--out", out / "p.cube"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LUT_3D_SIZE 5" in (out / "p.cube").read_text()


@pytest.mark.parametrize(
    "missing, extra, args",
    [
        ("matplotlib", "plot", ["plot", "--checkpoint", "{model}", "{photo}", "--out", "f.png"]),
        ("ml_collections", "train", ["train", "--workdir", "run"]),
        ("tensorflow_datasets", "train", ["build-dataset", "ailut_demo", "--data-dir", "d"]),
        ("torch", "convert", ["convert", "{pth}", "--out", "m"]),
        ("uvicorn", "serve", ["serve", "--checkpoint", "{model}"]),
    ],
    ids=["plot", "train", "build-dataset", "convert", "serve"],
)
def test_missing_extra_is_one_line_naming_it(missing, extra, args, model_dir, photo, tmp_path):
    pth = tmp_path / "authors.pth"
    pth.write_bytes(b"not read: torch is missing")
    args = [a.format(model=model_dir, photo=photo, pth=pth) for a in args]
    proc = ailut_without([missing], args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    expected = (
        f"ailut {args[0]}: error: this command needs the {extra} extra "
        f'(module {missing!r} is not installed): pip install "ailut-jax[{extra}]"'
    )
    assert proc.stderr.strip().splitlines() == [expected]
    # Nothing was started: no run directory, dataset or model directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authors.pth"]
