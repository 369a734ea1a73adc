"""The ``forgelab`` command line.

Heavy libraries (torch, gymnasium, SB3, wandb) are imported inside the commands that need them,
so ``forgelab --help`` and ``forgelab plugins`` stay instant however many plugins are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from forgelab.core.errors import ForgelabError
from forgelab.core.registry import PLURALS
from forgelab.core.report_cli import COMMANDS as REPORT_COMMANDS

EPILOG = """examples:
  forgelab run cartpole-ppo                      train, logging to W&B (offline without an account)
  forgelab run cartpole-dqn seed=3 agent.learning_rate=1e-3 train.total_steps=20000
  forgelab run cartpole-dqn --dry-run            print the resolved, validated config
  forgelab run --resume runs/cartpole-dqn/20261121-120000-ab12cd34
  forgelab eval runs/cartpole-dqn/20261121-120000-ab12cd34 --episodes 100 --video 3
  forgelab watch runs/cartpole-dqn/20261121-120000-ab12cd34   a window, or an MP4 headless
  forgelab list agents                           components with their options
  forgelab plugins                               installed plugins and their status
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forgelab", description="Train RL agents and generative models from plugins, "
        "logging to Weights & Biases.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins, their status and registrations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--check", nargs="?", const="", default=None, metavar="NAME",
                   help="run the conformance kit (forgelab.testing) on a plugin's or a "
                   "component's registrations; without NAME, on every third-party plugin")

    p = sub.add_parser("new-plugin", help="write a new plugin package (pyproject with the entry "
                       "point, components, an experiment, conformance tests, README)")
    p.add_argument("name", help="distribution name, e.g. forgelab-corridor")
    p.add_argument("--dir", default=".", help="parent folder of the new package (default: .)")
    for flag, what in (("agent", "an RL agent"), ("model", "a generative model"),
                       ("env", "a gymnasium environment"), ("dataset", "a dataset")):
        p.add_argument(f"--{flag}", action="store_true",
                       help=f"include {what} (no flag: all four)")

    p = sub.add_parser("list", help="list registered components and their options")
    p.add_argument("what", nargs="?", default="all", metavar="WHAT",
                   help="all (default), " + ", ".join(PLURALS) + ", experiments, or the "
                   "plural of a kind a plugin family registers (checked once plugins load)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--details", action="store_true",
                   help="envs: build each one and show its observation and action spaces")

    p = sub.add_parser("run", help="train an experiment (a YAML path or a name in experiments/)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="overrides are dotted.key=value, e.g. seed=3 agent=ppo "
                       "agent.learning_rate=1e-3 env.num_envs=8 train.total_steps=20000")
    p.add_argument("experiment", nargs="?", help="experiment name or YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = sub.add_parser("eval", help="re-evaluate a saved run's checkpoint and log it")
    p.add_argument("run_dir", help="runs/<experiment>/<timestamp>-<id>")
    p.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                   help="which checkpoint (default best)")
    p.add_argument("--episodes", type=int, metavar="N",
                   help="agents: episodes to play (default: the experiment's eval_episodes)")
    p.add_argument("--video", type=int, metavar="N",
                   help="agents: record the first N episodes (default 1; 0 for none)")
    p.add_argument("--stochastic", action="store_true",
                   help="agents: sample actions from the policy instead of the greedy action")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")

    p = sub.add_parser("watch", help="play a trained agent: in a window, or into a video")
    p.add_argument("run_dir", help="runs/<experiment>/<timestamp>-<id>")
    p.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                   help="which checkpoint (default best)")
    p.add_argument("--episodes", type=int, default=1, metavar="N", help="episodes (default 1)")
    p.add_argument("--stochastic", action="store_true",
                   help="sample actions from the policy instead of the greedy action")
    p.add_argument("--out", help="video file when there is no display (default: "
                   "<run>/videos/watch-<checkpoint>-<time>.mp4)")

    from forgelab.core.sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    from forgelab.core.report_cli import add_parsers as add_report_parsers

    add_report_parsers(sub)  # report, compare, runs

    p = sub.add_parser("sample", help="write samples from a saved generative model")
    p.add_argument("run_dir", help="runs/<experiment>/<timestamp>-<id>")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", help="output file (.png grid, or .csv for 2-D data)")
    p.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                   help="which checkpoint (default best)")
    return parser


def _host(report: bool = True):
    from forgelab.core.pluginhost import DISABLE_ENV, get_host

    host = get_host()
    if report:
        for info in host.failures:
            print(f"warning: plugin {info.name!r} ({info.distribution or info.module}) skipped: "
                  f"{info.error}\n  disable it with {DISABLE_ENV}={info.name} or uninstall "
                  f"{info.distribution or 'it'}", file=sys.stderr)
    return host


# -------------------------------------------------------------------------- plugins
def cmd_plugins(args: argparse.Namespace) -> int:
    if args.check is not None:
        from forgelab.testing.cli import cmd_check

        return cmd_check(args.check or None, args.json)
    from forgelab.core.launchers import available_launchers

    host = _host(report=False)
    plugins = [info.as_dict() for info in host.plugins.values()]
    launchers = available_launchers(host).values()  # registered through their own hook
    for info in plugins:
        info["registered"] += [{"kind": "launcher", "name": launcher.name}
                               for launcher in launchers if launcher.plugin == info["name"]]
    if args.json:
        print(json.dumps(plugins, indent=2))
        return 0
    if not plugins:
        print("no plugins installed")
    for info in plugins:
        dist = f"{info['distribution']} {info['version']}" if info["distribution"] else "-"
        print(f"{info['name']:<14} {info['status']:<9} {dist:<20} {info['module']}")
        if info["error"]:
            print(f"    error: {info['error']}")
        for reg in info["registered"]:
            print(f"    {reg['kind']:<8} {reg['name']}")
    return 0


# ----------------------------------------------------------------------------- list
def _type_name(annotation: Any) -> str:
    """A type as a user reads it: ``Literal['mse', 'bce']`` -> ``'mse' | 'bce'``."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # constraints as a reader writes them; validators dropped
        bounds = [_constraint(meta) for meta in annotation.__metadata__]
        return " ".join([_type_name(args[0]), *filter(None, bounds)])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _constraint(meta: Any) -> str:
    """``Gt(gt=0)`` -> ``> 0``; metadata that is not a bound (validators) -> ``""``."""
    for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                       ("min_length", "min length"), ("max_length", "max length")):
        value = getattr(meta, attr, None)
        if value is not None and type(meta).__module__.startswith("annotated_types"):
            return f"{sign} {value}"
    return ""


def describe_options(schema: Any) -> list[dict[str, Any]]:
    """Name, type, default and description of each field of a pydantic model."""
    if schema is None:
        return []
    from pydantic_core import PydanticUndefined

    options = []
    for name, field in schema.model_fields.items():
        type_name = _type_name(field.annotation)
        default = field.default
        if default is PydanticUndefined:
            default = field.default_factory() if field.default_factory else "(required)"
        options.append({"name": name, "type": type_name, "default": default,
                        "description": field.description or ""})
    return options


def _component_rows(host, kind: str) -> list[dict[str, Any]]:
    rows = []
    for reg in host.registry.all(kind):
        row = {"name": reg.name, "kind": kind, "description": reg.description,
               "plugin": reg.source.plugin, "distribution": reg.source.distribution}
        if kind == "env":
            row["entry_point"] = reg.factory if isinstance(reg.factory, str) else repr(reg.factory)
        else:
            try:
                row["options"] = describe_options(reg.load_config())
            except ForgelabError as exc:
                row["options_error"] = exc.message
        rows.append(row)
    return rows


def _listed_rows(host, kind: str, details: bool, everything: bool) -> list[dict[str, Any]]:
    """The rows of ``forgelab list <kind>s``: the plugins' registrations, then what the
    families that take ``kind`` as an input know beyond them (their support module's
    ``catalog_rows``: gymnasium's own envs). With ``everything`` (``list all``) and no details
    those extra rows are left out (gymnasium alone has hundreds)."""
    extra: list[dict[str, Any]] = []
    for family in host.families().values():
        if kind in (input_kind for input_kind, _ in family.inputs):
            catalog = getattr(family.load_support(), "catalog_rows", None)
            if catalog is not None:  # first: it may refuse clashing registrations
                extra += catalog(kind, host, details)
    rows = _component_rows(host, kind)
    by_name = {row["name"]: row for row in rows}
    for row in extra:
        mine = by_name.get(row["name"])
        if mine is not None:  # a plugin's: keep its source, take the details
            mine.update({key: value for key, value in row.items() if key not in mine})
        elif details or not everything:
            rows.append(row)
    return rows


def _print_component(row: dict[str, Any]) -> None:
    source = row["plugin"] + (f" ({row['distribution']})" if row.get("distribution") and
                              row["distribution"] != row["plugin"] else "")
    print(f"  {row['name']:<26} {row.get('description', '')}  [{source}]")
    for key in ("observation_space", "action_space", "unavailable", "options_error"):
        if key in row:
            print(f"      {key}: {row[key]}")
    for opt in row.get("options", []):
        desc = f"  {opt['description']}" if opt["description"] else ""
        print(f"      {opt['name']}: {opt['type']} = {opt['default']!r}{desc}")


def _experiment_rows(host) -> list[dict[str, Any]]:
    """Experiment names, with the plugin that ships each one (None: a folder's file)."""
    from forgelab.core.config import available_experiments, find_experiment

    rows = []
    for name in available_experiments():
        shipped = host.experiments.get(name)
        from_plugin = shipped is not None and find_experiment(name) == shipped.path
        rows.append({"name": name, "plugin": shipped.source.plugin if from_plugin else None,
                     "distribution": shipped.source.distribution if from_plugin else None})
    return rows


def _listable(host) -> dict[str, str]:
    """Plural -> registry kind of everything ``forgelab list`` shows: the built-in kinds, then
    those plugin families add (their component key, their inputs, whatever was registered)."""
    kinds = list(host.registry.kinds())
    for family in host.families().values():
        for kind in (family.component_key, *(kind for kind, _ in family.inputs)):
            if kind not in kinds:
                kinds.append(kind)
    return {**PLURALS, **{f"{kind}s": kind for kind in kinds if kind not in PLURALS.values()}}


def list_rows(host, what: str = "all", details: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``forgelab list WHAT`` by plural (``agents``, ..., ``experiments``); ``all``
    lists every kind, a plugin family's too."""
    from forgelab.core.errors import unknown_name_message

    plurals = _listable(host)
    if what not in ("all", "experiments", *plurals):
        raise ForgelabError(unknown_name_message("listing", what,
                                                 ["all", *plurals, "experiments"]),
                            hint="`forgelab plugins` shows the installed plugins and families")
    result: dict[str, list[dict[str, Any]]] = {}
    chosen = list(plurals) if what == "all" else [] if what == "experiments" else [what]
    for plural in chosen:
        result[plural] = _listed_rows(host, plurals[plural], details, everything=what == "all")
    if what in ("all", "experiments"):
        result["experiments"] = _experiment_rows(host)
    return result


def cmd_list(args: argparse.Namespace) -> int:
    result = list_rows(_host(), args.what, args.details)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for plural, rows in result.items():
        print(f"{plural}:")
        if not rows:
            print("  (none)")
        for row in rows:
            if plural == "experiments":
                print(f"  {row['name']}" + (f"  [{row['plugin']}]" if row["plugin"] else ""))
            else:
                _print_component(row)
    return 0


# ------------------------------------------------------------------- run / eval / sample
def cmd_run(args: argparse.Namespace) -> int:
    from forgelab.core import runner
    from forgelab.core.config import dump_yaml, load_experiment

    host = _host()
    if args.resume:
        overrides = ([args.experiment] if args.experiment else []) + args.overrides
        if args.dry_run:
            prepared, _, _ = runner.prepare_resume(Path(args.resume), overrides, host=host)
            print(dump_yaml(prepared.resolved_config()), end="")
            return 0
        run_dir = runner.resume(Path(args.resume), overrides, host=host,
                                show_progress=not args.no_progress)
        print(f"run directory: {run_dir}")
        return runner.exit_status(run_dir)
    if not args.experiment:
        raise ForgelabError("which experiment? `forgelab run EXPERIMENT [key=value ...]`",
                            hint="`forgelab list experiments` shows the ones in experiments/")
    from forgelab.core.wandb_agent import agent_overrides, requeued_run

    config = load_experiment(args.experiment, agent_overrides(args.overrides))
    prepared = runner.prepare(config, host)
    if args.dry_run:
        print(dump_yaml(prepared.resolved_config()), end="")
        return 0
    requeued = requeued_run(config)  # a W&B agent requeued a preempted run: continue it
    run_dir = (runner.resume(requeued, host=host, show_progress=not args.no_progress)
               if requeued else runner.train(config, host=host, prepared=prepared,
                                             show_progress=not args.no_progress))
    print(f"run directory: {run_dir}")
    return runner.exit_status(run_dir)


def cmd_eval(args: argparse.Namespace) -> int:
    from forgelab.core import playback

    metrics, job_dir = playback.evaluate(Path(args.run_dir), which=args.checkpoint,
                                         episodes=args.episodes, videos=args.video,
                                         stochastic=args.stochastic, host=_host())
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        videos = metrics.pop("videos", [])
        for key, value in metrics.items():
            print(f"{key:<28} {value:.4f}" if isinstance(value, float) else f"{key:<28} {value}")
        for path in videos:
            print(f"video: {path}")
        print(f"evaluation logged in {job_dir}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from forgelab.core import playback

    returns, video = playback.watch(Path(args.run_dir), which=args.checkpoint,
                                    episodes=args.episodes, stochastic=args.stochastic,
                                    out=Path(args.out) if args.out else None, host=_host())
    print("returns: " + ", ".join(f"{r:.1f}" for r in returns))
    if video is not None:
        print(f"no display: wrote the episodes to {video}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from forgelab.core import runner

    if args.n < 1:
        raise ForgelabError(f"--n must be at least 1 (got {args.n})")
    path = runner.sample(Path(args.run_dir), args.n, Path(args.out) if args.out else None,
                         which=args.checkpoint, host=_host())
    print(f"wrote {path}")
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from forgelab.testing.scaffold import new_plugin

    kinds = [k for k in ("agent", "model", "env", "dataset") if getattr(args, k)]
    root = new_plugin(args.name, Path(args.dir), kinds or None)
    print(f"wrote {root}\n  install it: pip install -e {root}\n  test it:    cd {root} && "
          "pytest")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from forgelab.core.sweep import run_sweep

    return run_sweep(args, _host())


COMMANDS = {"plugins": cmd_plugins, "list": cmd_list, "run": cmd_run, "eval": cmd_eval,
            "watch": cmd_watch, "sample": cmd_sample, "new-plugin": cmd_new_plugin,
            "sweep": cmd_sweep, **REPORT_COMMANDS}  # report, compare, runs


_HANDLER_PID: int | None = None  # the process that installed _terminate


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM as an exception, in the process that installed this handler. A process forked
    from it (an async env worker, a plugin's own) inherits the handler; there SIGTERM keeps its
    default action, so the child ends quietly instead of raising wherever it was, with a
    traceback (multiprocessing terminates workers still alive at exit)."""
    import signal

    if os.getpid() != _HANDLER_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    from forgelab.core.errors import Terminated

    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import signal

    global _HANDLER_PID
    previous = None
    try:  # SIGTERM before training starts: the same clean-up as Ctrl-C, exit code 143
        _HANDLER_PID = os.getpid()
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (main() called from a library)
        pass
    if argv[:1] != ["watch"]:  # watch opens a window when there is a display
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless rendering for videos
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except KeyboardInterrupt as exc:
        # Ctrl-C or SIGTERM before a command took over (while the parser's imports load; a
        # sweep forwards SIGTERM to a trial that may still be starting): no traceback.
        print("interrupted", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    except BrokenPipeError:
        # `forgelab list | head`: the reader left; end quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    finally:
        if previous is not None:  # main() called in-process (tests, the Python API)
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    parser = _parser()
    overrides: list[str] = []
    if argv and argv[0] in ("run", "sweep"):  # key=value may come before or after the flags
        overrides = [a for a in argv[2:] if "=" in a and not a.startswith("-")]
        argv = argv[:2] + [a for a in argv[2:] if a not in overrides]
    args, unknown = parser.parse_known_args(argv)
    if args.command == "run":
        args.overrides = list(args.overrides) + overrides
    elif args.command == "sweep":
        args.items = list(args.items) + overrides
    if unknown:
        if args.command == "run":
            print(f"error: cannot read {' '.join(unknown)!r}: overrides are dotted.key=value with "
                  "no leading dashes\n  hint: for example: forgelab run cartpole-dqn seed=3 "
                  "agent.learning_rate=1e-3", file=sys.stderr)
            return 2
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.version:
        from importlib.metadata import version

        print(f"forgelab {version('forgelab')}")
        return 0
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except ForgelabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", 2))
    except (OSError, MemoryError, RuntimeError) as exc:
        # A full or read-only disk, memory that cannot be had: one line, not a traceback.
        from forgelab.core.faults import as_user_error

        error = as_user_error(exc)
        if error is None:
            raise
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"  hint: {error.hint}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
