"""``forgelab new-plugin NAME``: write an installable plugin package that passes the kit."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from forgelab.core.errors import ConfigError
from forgelab.testing import templates as t

KINDS = ("agent", "model", "env", "dataset")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*[a-z0-9]$")


def names(dist: str) -> dict[str, str]:
    """The package, entry-point and component prefix for a distribution name.

    ``forgelab-corridor`` -> package ``forgelab_corridor``, plugin and prefix ``corridor``.
    """
    if not _NAME_RE.match(dist):
        raise ConfigError(f"plugin name {dist!r} is not a valid distribution name: use lowercase "
                          "letters, digits and '-', e.g. forgelab-corridor")
    pkg = dist.replace("-", "_")
    short = re.sub(r"^forgelab[-_]", "", dist).replace("_", "-")
    return {"dist": dist, "pkg": pkg, "short": short}


def new_plugin(dist: str, parent: Path, kinds: list[str] | None = None) -> Path:
    """Write ``parent/dist/`` with a pyproject (entry point), the components in ``kinds`` (all
    four by default), experiment files, tests that use forgelab.testing, and a README.

    :return: the package folder.
    """
    kinds = list(kinds or KINDS)
    ns = names(dist)
    root = Path(parent) / dist
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} already exists and is not empty",
                          hint="choose another name or --dir")
    short, pkg = ns["short"], ns["pkg"]
    ns.update(
        agent_env=f"{short}/Corridor-v0" if "env" in kinds else "CartPole-v1",
        model_dataset=f"{short}-blobs" if "dataset" in kinds else "moons",
        what=", ".join({"agent": "an RL agent", "model": "a generative model",
                        "env": "an environment", "dataset": "a dataset"}[k] for k in kinds),
    )
    model_conformance = "{}" if "dataset" in kinds else \
        '{"n_train": 512, "n_val": 128, "n_test": 128}'
    components, experiments, run_lines = [], [], []
    plugin = t.PLUGIN_HEAD
    files: dict[str, str] = {}
    if "agent" in kinds:
        plugin += t.PLUGIN_AGENT
        files[f"{pkg}/agent.py"] = t.AGENT
        files[f"{pkg}/experiments/{short}-agent.yaml"] = t.EXPERIMENT_AGENT
        components.append(f"{short}-agent")
        experiments.append((f"{short}-agent", ("train.total_steps=300", "train.eval_every=150")))
        run_lines.append(f"forgelab run {short}-agent")
    if "model" in kinds:
        plugin += t.PLUGIN_MODEL.replace(
            '"train": {"epochs": 2}',
            f'"dataset_options": {model_conformance}, "train": {{"epochs": 2}}')
        files[f"{pkg}/model.py"] = t.MODEL
        files[f"{pkg}/experiments/{short}-gaussian.yaml"] = t.EXPERIMENT_MODEL + (
            "" if "dataset" in kinds else f"dataset_options: {model_conformance}\n")
        components.append(f"{short}-gaussian")
        experiments.append((f"{short}-gaussian", ("train.epochs=1", "train.eval_every=1")))
        run_lines.append(f"forgelab run {short}-gaussian")
    if "env" in kinds:
        plugin += t.PLUGIN_ENV
        files[f"{pkg}/env.py"] = t.ENV
        components.append(f"{short}/Corridor-v0")
    if "dataset" in kinds:
        plugin += t.PLUGIN_DATASET
        files[f"{pkg}/dataset.py"] = t.DATASET
        components.append(f"{short}-blobs")
    if experiments:
        plugin += t.PLUGIN_EXPERIMENTS
    else:
        plugin = plugin.replace("from pathlib import Path\n\n", "")
    files[f"{pkg}/__init__.py"] = f'"""{dist}: a forgelab plugin."""\n'
    files[f"{pkg}/plugin.py"] = plugin
    files["pyproject.toml"] = t.PYPROJECT
    files["README.md"] = t.README
    files["tests/test_conformance.py"] = t.TEST_CONFORMANCE
    if experiments:
        files["tests/test_experiments.py"] = t.TEST_EXPERIMENTS
    ns.update(components=repr(components), experiments=repr(experiments),
              run_lines="\n".join(run_lines))
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(ns), encoding="utf-8")
    return root
