"""Snapshot and restore the full state of a gymnasium (vector) environment.

Why: a run that is interrupted and resumed must end with exactly the same parameters as one that
ran straight through. For that the training environments must continue mid-episode from the
very same state: physics state, elapsed steps of the time limit, episode statistics, running
observation statistics and every random generator (the env's ``np_random`` and the spaces'
``sample()`` generators).

How: for each sub-environment we walk the wrapper chain down to the unwrapped env and, for every
layer, keep the instance attributes that are plain data: NumPy arrays and scalars, Python
numbers / bools / None, tuples and lists of those, deques of numbers, NumPy ``Generator`` states,
and small helper objects made of plain data (e.g. ``RunningMeanStd``). The vector env itself
(``SyncVectorEnv`` autoreset bookkeeping) and any vector wrappers are captured the same way.
Everything else (sub-envs, spaces, specs, render handles, strings, enums) is structure, rebuilt
identically from the config, and left alone. Legacy ``RandomState`` generators (MinAtar's games
draw from one) are captured and restored in place, so objects that share one keep sharing it,
and deques of arrays (``FrameStackObservation``'s frames) are kept like deques of numbers.

State that lives outside plain attributes (another library's game object, an emulator) is
captured through two optional methods on the env: ``get_resume_state() -> dict`` (plain data)
and ``set_resume_state(state)``. forgelab's MinAtar env implements them; ALE's ``AtariEnv`` gets
the same through :data:`_EXTERNAL`, its emulator state (with its RNG) serialized to bytes.

``AsyncVectorEnv`` sub-envs live in worker processes: we fetch a pickled copy of each
wrapper chain through ``envs.call("__dict__")``, read or patch that copy here, and send it back
with ``envs.set_attr("__dict__", ...)``. That needs picklable training envs (true for envs
without an open render window). With SAME_STEP autoreset (forgelab's default) an async worker
holds no pending-reset flag; with NEXT_STEP the worker's private flag cannot be restored.

The result is made of tensors, numbers, tuples, lists and dicts only
(:func:`forgelab.core.checkpoints.to_safe`), so it loads with ``torch.load(weights_only=True)``.

Usage::

    state = snapshot_env(envs)     # in Component.state_dict()
    restore_env(envs, state)       # in Component.load_state_dict(), instead of envs.reset(seed)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from numbers import Number
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from forgelab.core.checkpoints import to_safe

FORMAT = 1
# Attributes that are structure or process plumbing, never state to copy back.
_SKIP = frozenset({"env", "envs", "env_fns", "closed", "metadata", "spec", "_saved_kwargs",
                   "_cached_spec", "_metadata", "parent_pipes", "processes", "error_queue",
                   "shared_memory", "_state", "render_mode"})
_MAX_LIST = 1_000_000  # a list longer than this is not bookkeeping; skip it


# --------------------------------------------------------------------------- values
def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, np.ndarray, np.generic)):
        return not (isinstance(value, np.ndarray) and value.dtype == object)
    if isinstance(value, (tuple, list)) and len(value) <= _MAX_LIST:
        return all(_is_plain(v) for v in value)
    return False


def _encode(value: Any) -> Any:
    """A plain value -> a checkpoint-safe one that decodes back to the same type and dtype."""
    # Tensors made here, not by to_safe: np.ascontiguousarray would turn 0-d arrays into 1-d.
    if isinstance(value, np.generic):  # keep np.float32 etc. exact: a 0-d tensor, tagged
        return {"__npscalar__": _tensor(np.array(value))}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _tensor(np.array(value, copy=True))}
    if isinstance(value, (tuple, list)):
        return {"__seq__": [_encode(v) for v in value], "tuple": isinstance(value, tuple)}
    return value  # None, bool, int, float


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__npscalar__" in value:
            return _as_numpy(value["__npscalar__"])[()]
        if "__ndarray__" in value:
            return _as_numpy(value["__ndarray__"])
        if "__seq__" in value:
            items = [_decode(v) for v in value["__seq__"]]
            return tuple(items) if value["tuple"] else items
    return value


def _tensor(array: np.ndarray) -> torch.Tensor | dict[str, Any]:
    """The array as a tensor; a dtype torch has no tensor for (FrozenLake's map of bytes,
    strings) as its raw bytes in a uint8 tensor, with the dtype and shape to read them back."""
    try:
        return torch.from_numpy(array)
    except TypeError:
        raw = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8).copy()
        return {"__raw__": torch.from_numpy(raw), "dtype": array.dtype.str,
                "shape": list(array.shape)}


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, dict) and "__raw__" in value:
        data = value["__raw__"].numpy().tobytes()
        return np.frombuffer(data, np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    return np.array(value, copy=True)


def _rng_state(gen: np.random.Generator) -> dict[str, Any]:
    return {"__generator__": gen.bit_generator.state}


def _random_state(rs: np.random.RandomState) -> dict[str, Any]:
    state = rs.get_state(legacy=False)  # MT19937 key and position, and the cached Gaussian
    return {"__randomstate__": {"bit_generator": state["bit_generator"],
                                "key": _encode(state["state"]["key"]),
                                "pos": int(state["state"]["pos"]),
                                "has_gauss": int(state["has_gauss"]),
                                "gauss": float(state["gauss"])}}


def _set_random_state(rs: np.random.RandomState, saved: dict[str, Any]) -> None:
    rs.set_state({"bit_generator": saved["bit_generator"],
                  "state": {"key": _decode(saved["key"]), "pos": saved["pos"]},
                  "has_gauss": saved["has_gauss"], "gauss": saved["gauss"]})


def _make_generator(state: dict[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _capture_object(obj: Any) -> dict[str, Any] | None:
    """A small helper object made of plain data (RunningMeanStd and the like), else None."""
    attrs = getattr(obj, "__dict__", None)
    if attrs is None or isinstance(obj, (gym.Env, gym.vector.VectorEnv, gym.Space, type)):
        return None
    if not attrs or not all(_is_plain(v) for v in attrs.values()):
        return None
    return {"__object__": {k: _encode(v) for k, v in attrs.items()}}


def _capture_space(space: gym.Space) -> dict[str, Any]:
    """The RNG of a space (used by ``space.sample()``) and of its sub-spaces."""
    rng = space.__dict__.get("_np_random")
    out: dict[str, Any] = {"rng": None if rng is None else rng.bit_generator.state}
    subspaces = getattr(space, "spaces", None)
    if isinstance(subspaces, dict):
        out["sub"] = {str(k): _capture_space(s) for k, s in subspaces.items()}
    elif isinstance(subspaces, (tuple, list)):
        out["sub"] = {str(i): _capture_space(s) for i, s in enumerate(subspaces)}
    return {"__space__": out}


def _restore_space(space: gym.Space, state: dict[str, Any]) -> None:
    rng = state["rng"]
    current = space.__dict__.get("_np_random")
    if rng is None:
        space._np_random = None
    elif current is not None and current.bit_generator.state["bit_generator"] == \
            rng["bit_generator"]:
        current.bit_generator.state = rng
    else:
        space._np_random = _make_generator(rng)
    subspaces = getattr(space, "spaces", None)
    for key, sub_state in state.get("sub", {}).items():
        sub = subspaces[key] if isinstance(subspaces, dict) else subspaces[int(key)]
        _restore_space(sub, sub_state)


# --------------------------------------------------------------------------- layers
def _capture_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The state-bearing attributes of one layer (an env, a wrapper or a vector env)."""
    out: dict[str, Any] = {}
    for name, value in attrs.items():
        if name in _SKIP:
            continue
        if isinstance(value, np.random.Generator):
            out[name] = _rng_state(value)
        elif isinstance(value, np.random.RandomState):
            out[name] = _random_state(value)
        elif isinstance(value, gym.Space):
            out[name] = _capture_space(value)
        elif isinstance(value, deque):
            if all(isinstance(v, Number) or _is_plain(v) for v in value):
                out[name] = {"__deque__": [_encode(v) for v in value], "maxlen": value.maxlen}
        elif _is_plain(value):
            out[name] = _encode(value)
        else:
            captured = _capture_object(value)
            if captured is not None:
                out[name] = captured
    return out


def _restore_attrs(attrs: dict[str, Any], state: dict[str, Any], where: str) -> None:
    """Write ``state`` back into a layer's ``__dict__`` (arrays in place when they fit, so
    anything that shares the buffer keeps seeing it)."""
    for name, saved in state.items():
        current = attrs.get(name)
        if isinstance(saved, dict) and "__generator__" in saved:
            rng = saved["__generator__"]
            if isinstance(current, np.random.Generator) and \
                    current.bit_generator.state["bit_generator"] == rng["bit_generator"]:
                current.bit_generator.state = rng
            else:
                attrs[name] = _make_generator(rng)
        elif isinstance(saved, dict) and "__randomstate__" in saved:
            if not isinstance(current, np.random.RandomState):
                current = attrs[name] = np.random.RandomState()
            _set_random_state(current, saved["__randomstate__"])  # in place: sharers see it
        elif isinstance(saved, dict) and "__space__" in saved:
            if not isinstance(current, gym.Space):
                raise ValueError(f"{where}.{name}: expected a space to restore, found "
                                 f"{type(current).__name__}")
            _restore_space(current, saved["__space__"])
        elif isinstance(saved, dict) and "__deque__" in saved:
            attrs[name] = deque((_decode(v) for v in saved["__deque__"]), maxlen=saved["maxlen"])
        elif isinstance(saved, dict) and "__object__" in saved:
            if current is None or not hasattr(current, "__dict__"):
                raise ValueError(f"{where}.{name}: cannot restore into "
                                 f"{type(current).__name__}")
            _restore_attrs(current.__dict__, saved["__object__"], f"{where}.{name}")
        else:
            value = _decode(saved)
            if isinstance(current, np.ndarray) and isinstance(value, np.ndarray) and \
                    current.shape == value.shape and current.dtype == value.dtype and \
                    current.flags.writeable:
                current[...] = value
            else:
                attrs[name] = value


def _chain(env: Any) -> list[Any]:
    """The layers of a (vector) env: outermost wrapper first, unwrapped env last."""
    layers = [env]
    while isinstance(layers[-1], (gym.Wrapper, gym.vector.VectorWrapper)):
        layers.append(layers[-1].env)
    return layers


def _capture_layer(layer: Any) -> dict[str, Any]:
    state = _capture_attrs(vars(layer))
    hooks = _resume_hooks(layer)
    if hooks is not None:
        state["__resume_state__"] = hooks[0](layer)
    return state


def _restore_layer(layer: Any, state: dict[str, Any], where: str) -> None:
    state = dict(state)
    extra = state.pop("__resume_state__", None)
    _restore_attrs(vars(layer), state, where)
    hooks = _resume_hooks(layer)
    if extra is not None and hooks is not None:
        hooks[1](layer, extra)


def _resume_hooks(layer: Any) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]] | None:
    """(capture, restore) of the state a layer keeps outside its plain attributes, if any."""
    cls = type(layer)  # the class's own methods: never what a wrapper might forward
    if hasattr(cls, "get_resume_state") and hasattr(cls, "set_resume_state"):
        return cls.get_resume_state, cls.set_resume_state
    return _EXTERNAL.get(f"{cls.__module__}.{cls.__qualname__}")


def _ale_state(env: Any) -> dict[str, Any]:
    """ALE's emulator state, its RNG included (sticky actions draw from it), as bytes."""
    data = env.ale.cloneState(include_rng=True).serialize()
    return {"ale": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


def _set_ale_state(env: Any, state: dict[str, Any]) -> None:
    from ale_py import ALEState

    env.ale.restoreState(ALEState(_as_numpy(state["ale"]).tobytes()))


# Classes of other libraries whose state needs their own API (module.qualname -> hooks); by name,
# so that nothing here imports them.
_EXTERNAL: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    "ale_py.env.AtariEnv": (_ale_state, _set_ale_state),
}


def _snapshot_single(env: gym.Env) -> dict[str, Any]:
    layers = _chain(env)
    return {"classes": [type(layer).__name__ for layer in layers],
            "layers": [_capture_layer(layer) for layer in layers]}


def _restore_single(env: gym.Env, state: dict[str, Any], where: str) -> None:
    layers = _chain(env)
    classes = [type(layer).__name__ for layer in layers]
    if classes != list(state["classes"]):
        raise ValueError(f"{where}: the environment's wrappers changed since the snapshot "
                         f"({' > '.join(state['classes'])} -> {' > '.join(classes)})")
    for i, (layer, layer_state) in enumerate(zip(layers, state["layers"], strict=True)):
        _restore_layer(layer, layer_state, f"{where}.{classes[i]}")
    _settle_checkers(layers)


def _settle_checkers(layers: list[Any]) -> None:
    """gymnasium's PassiveEnvChecker compares the first observations with the ones it kept
    (``_previous_data``, not plain data, so not in the snapshot); a snapshot taken before
    that comparison would crash the resumed env on its next step. Mark the check as done."""
    for layer in layers:
        if "_previous_data" in vars(layer) and layer._previous_data is None:
            layer.checked_step = True
            layer.checked_data_reuse = True


def _async_copies(envs: gym.vector.AsyncVectorEnv) -> list[gym.Env]:
    """Pickled copies of the workers' envs, rebuilt as objects here (``__dict__`` of the
    outermost wrapper, whose ``env`` holds the rest of the chain)."""
    copies = []
    for outer_dict in envs.call("__dict__"):
        outer = object.__new__(_OuterShim)
        outer.__dict__.update(outer_dict)
        copies.append(outer)
    return copies


class _OuterShim(gym.Wrapper):
    """Stands in for the outermost wrapper of an async worker's env (its class is not sent)."""


# --------------------------------------------------------------------------- public API
def capture_attributes(obj: Any) -> dict[str, Any]:
    """The state-bearing attributes of any object, by the rules above (for an env's
    ``get_resume_state``: e.g. the game object of a library the env wraps)."""
    return _capture_attrs(vars(obj))


def restore_attributes(obj: Any, state: dict[str, Any], where: str) -> None:
    """Put back what :func:`capture_attributes` captured (``where`` names it in errors)."""
    _restore_attrs(vars(obj), state, where)


def _base_vector(envs: Any) -> tuple[list[Any], Any]:
    chain = _chain(envs)
    return chain, chain[-1]


def snapshot_env(envs: gym.vector.VectorEnv | gym.Env) -> dict[str, Any]:
    """Capture the full state of a vector env (or a single env) as checkpoint-safe data.

    :param envs: a ``SyncVectorEnv`` / ``AsyncVectorEnv`` (possibly wrapped by vector wrappers)
        or a single ``gymnasium.Env``.
    :return: a dict of tensors, numbers, lists and dicts (``torch.load(weights_only=True)``-safe).
    """
    if isinstance(envs, gym.Env):
        return to_safe({"format": FORMAT, "kind": "single", "env": _snapshot_single(envs)})
    chain, base = _base_vector(envs)
    if isinstance(base, gym.vector.SyncVectorEnv):
        subs = list(base.envs)
        kind = "sync"
    elif isinstance(base, gym.vector.AsyncVectorEnv):
        subs = _async_copies(base)
        kind = "async"
    elif isinstance(base, gym.vector.VectorEnv):
        # A native batch env (env.vectorization: vector): its state is its own arrays and
        # generator, captured with the vector layers; it has no sub-envs.
        subs = []
        kind = "native"
    else:
        raise TypeError(f"cannot snapshot {type(base).__name__}: expected a vector env")
    state = {
        "format": FORMAT,
        "kind": kind,
        "vector": {"classes": [type(layer).__name__ for layer in chain],
                   "layers": [_capture_layer(layer) for layer in chain]},
        "envs": [_snapshot_single(env) for env in subs],
    }
    if kind == "async":  # the outer layer's class is unknown on this side of the pipe
        for sub in state["envs"]:
            sub["classes"][0] = None
    return to_safe(state)


def restore_env(envs: gym.vector.VectorEnv | gym.Env, state: dict[str, Any]) -> None:
    """Put back a state captured by :func:`snapshot_env` into an identically built env.

    Call it instead of ``envs.reset(seed=...)`` when resuming: the envs continue mid-episode.

    :raises ValueError: when the env's structure (number of envs, wrappers) differs.
    """
    if state.get("format") != FORMAT:
        raise ValueError(f"unknown env snapshot format {state.get('format')!r}")
    if state["kind"] == "single":
        _restore_single(envs, state["env"], "env")
        return
    chain, base = _base_vector(envs)
    classes = [type(layer).__name__ for layer in chain]
    if classes != list(state["vector"]["classes"]):
        raise ValueError(f"the vector env changed since the snapshot: "
                         f"{state['vector']['classes']} -> {classes}")
    if state["kind"] != "native" and base.num_envs != len(state["envs"]):
        raise ValueError(f"the snapshot has {len(state['envs'])} envs, this vector env has "
                         f"{base.num_envs}")
    for layer, layer_state, name in zip(chain, state["vector"]["layers"], classes, strict=True):
        _restore_layer(layer, layer_state, name)
    if state["kind"] == "native":
        return
    if state["kind"] == "sync":
        for i, (env, env_state) in enumerate(zip(base.envs, state["envs"], strict=True)):
            _restore_single(env, env_state, f"envs[{i}]")
        return
    copies = _async_copies(base)
    for i, (env, env_state) in enumerate(zip(copies, state["envs"], strict=True)):
        env_state = {**env_state, "classes": [None, *list(env_state["classes"])[1:]]}
        layers = _chain(env)
        names = [None, *[type(layer).__name__ for layer in layers[1:]]]
        if names != env_state["classes"]:
            raise ValueError(f"envs[{i}]: the environment's wrappers changed since the snapshot")
        for layer, layer_state in zip(layers, env_state["layers"], strict=True):
            _restore_layer(layer, layer_state, f"envs[{i}]")
        _settle_checkers(layers)
    base.set_attr("__dict__", [vars(env) for env in copies])
