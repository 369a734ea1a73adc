"""The one call a training loop makes after each update: ``ctx.update(...)``.

Every loop (native agents, generative models, the SB3 callback) reports its progress through
:meth:`TrainingLoop.update`, which does, in this order:

1. log the rows of events that happened during the update (finished episodes) and the update's
   own metrics, against the family's axis, with the throughput (``perf/sps``) added;
2. evaluate when the step crossed a ``train.eval_every`` or ``train.video_every`` mark, or
   reached the budget without an evaluation there (training ends on one):
   ``component.periodic_evaluation(video)`` logs what it measures and returns it;
3. keep the ``best`` checkpoint when that evaluation improved the family's best metric;
4. save a periodic checkpoint when the step crossed a ``train.checkpoint_every`` mark;
5. move the progress bar.

The component never calls the checkpoint manager or the evaluator schedule itself. The loop's
own state (best value, evaluations, the step of the last one, and an evaluation that Ctrl-C or
SIGTERM cut short, which the resumed run makes first) is saved in every checkpoint.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgelab.core.component import RunContext
    from forgelab.core.family import Family


def crossed(every: int | None, step: int, last_step: int) -> bool:
    """Whether going from ``last_step`` to ``step`` passed a multiple of ``every``."""
    return bool(every) and step // every > last_step // every


class TrainingLoop:
    """The schedule around a component's updates (see the module docstring).

    :param ctx: the run context (tracker, checkpoints, progress, train spec).
    :param family: the component's family (axis, budget, best metric, throughput key).
    """

    def __init__(self, ctx: RunContext, family: Family) -> None:
        self.ctx, self.family = ctx, family
        train = ctx.config.train
        self.budget = family.budget(ctx.config)
        self.eval_every = train.eval_every or family.default_eval_every
        self.best: float | None = None
        self.evaluations = 0
        self.last_eval_step = -1
        self.unfinished: tuple[int, bool] | None = None  # (step, video) of a cut evaluation
        self.last_step = 0
        self._clock = (0, time.perf_counter(), 0.0)  # (step, wall time, seconds evaluating)
        self._next_mark = 0  # the first step at which an evaluation or checkpoint can be due

    def start(self, step: int) -> None:
        """Called by the runner before ``fit``: marks are counted from ``step``."""
        self.last_step = step
        self._clock = (step, time.perf_counter(), 0.0)
        self._next_mark = self._first_mark_after(step)

    def catch_up(self, component: Any) -> None:
        """Called by the runner after :meth:`start`, before ``fit``: on resume, the evaluation a
        stop cut short runs now, at the step it was due. The checkpoint was saved when the run
        stopped, right after that update, so the component is as it was then and this is the
        evaluation an uninterrupted run makes. A run at its budget without its final
        evaluation gets that one (``fit`` has nothing left to train, so it would never run)."""
        step = int(getattr(component, "step", 0))
        due, self.unfinished = self.unfinished, None
        if due is not None and due[0] != step:
            print(f"warning: the evaluation at step {due[0]} that a stop cut short is not made "
                  f"again: the checkpoint resumed from is at step {step}", file=sys.stderr)
            due = None
        if due is None and step >= self.budget and self.last_eval_step != step:
            due = (step, bool(self.ctx.config.train.video_every))
        if due is not None:
            self.evaluate(component, *due)

    def _first_mark_after(self, step: int) -> int:
        """The smallest step that crosses an eval / video / checkpoint mark after ``step``,
        or reaches the budget: below it an update has nothing to evaluate or save (DQN calls
        ``update`` every env step, so this check is what most calls cost)."""
        train = self.ctx.config.train
        marks = [(step // every + 1) * every
                 for every in (self.eval_every, train.video_every, train.checkpoint_every)
                 if every]
        return min([*marks, self.budget])

    # --------------------------------------------------------------------- per update
    def log_due(self, step: int) -> bool:
        """Whether an update ending at ``step`` crossed a ``train.log_every`` mark."""
        return crossed(self.ctx.config.train.log_every, step, self.last_step)

    def update(self, component: Any, step: int, metrics: Mapping[str, Any] | None = None, *,
               rows: Iterable[tuple[Mapping[str, Any], int]] = (),
               axes: Mapping[str, int] | None = None, position: int | None = None,
               show: Mapping[str, Any] | None = None) -> dict[str, float] | None:
        """Log, evaluate, checkpoint and show progress after one update (module docstring).

        :param component: the component being trained (evaluated and checkpointed).
        :param step: its progress in the family's unit after the update.
        :param metrics: the update's training row (None: nothing to log this time).
        :param rows: (row, step) of events within the update, logged first (episodes).
        :param axes: the axes ``metrics`` is logged against (default: the family's axis =
            ``step``).
        :param position: the progress bar's position (default: ``step``).
        :param show: values shown beside the bar.
        :return: the evaluation's metrics when one ran, else None.
        """
        ctx, family = self.ctx, self.family
        if step < self._next_mark and metrics is None and not rows:
            ctx.progress.update(step if position is None else position, **(show or {}))
            self.last_step = step
            return None
        axis = family.axis
        for row, at in rows:
            ctx.tracker.log(row, **{axis: at})
        if metrics is not None:
            if family.throughput_key is not None:
                start_step, start_time, eval_time = self._clock
                elapsed = max(time.perf_counter() - start_time - eval_time, 1e-9)
                metrics = {**metrics, family.throughput_key: (step - start_step) / elapsed}
            ctx.tracker.log(metrics, **(axes if axes is not None else {axis: step}))
        result = self._maybe_evaluate(component, step)
        if crossed(ctx.config.train.checkpoint_every, step, self.last_step):
            ctx.checkpoints.save(component, step)
        ctx.progress.update(step if position is None else position, **(show or {}))
        self.last_step = step
        self._next_mark = self._first_mark_after(step)
        return result

    def _maybe_evaluate(self, component: Any, step: int) -> dict[str, float] | None:
        train = self.ctx.config.train
        video = crossed(train.video_every, step, self.last_step)
        final = step >= self.budget and self.last_eval_step != step
        if not (crossed(self.eval_every, step, self.last_step) or video or final):
            return None
        # Training ends on an evaluation; it records a video when videos are on.
        return self.evaluate(component, step, video=video or (final and bool(train.video_every)))

    def evaluate(self, component: Any, step: int, video: bool) -> dict[str, float]:
        """Run ``component.periodic_evaluation(video)`` now and keep ``best`` when it improved."""
        tic = time.perf_counter()
        metrics = component.periodic_evaluation(video)
        key = getattr(component, "best_metric", self.family.best_metric)
        value = metrics.get(key) if key is not None else None
        if value is None and key is not None and self.ctx.stop_requested:
            self.unfinished = (step, video)  # Ctrl-C / SIGTERM cut it: redone on resume
        else:
            self.unfinished = None
            self.last_eval_step = step
        if value is not None:  # a partial evaluation (stopped part-way) has no value
            self.evaluations += 1
            value = float(value)
            if self._better(value):
                self.best = value
                self.ctx.checkpoints.save(component, step, best=True, metrics=metrics)
        if self.best is not None and self.family.best_summary is not None:
            self.ctx.tracker.summary({self.family.best_summary: self.best})
        start_step, start_time, eval_time = self._clock
        self._clock = (start_step, start_time, eval_time + time.perf_counter() - tic)
        return metrics

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.family.best_mode == "max" else value < self.best

    # -------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": self.best, "evaluations": self.evaluations,
                                 "last_eval_step": self.last_eval_step}
        if self.unfinished is not None:
            state["unfinished_eval"] = list(self.unfinished)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.evaluations = int(state.get("evaluations", 0))
        self.last_eval_step = int(state.get("last_eval_step", -1))
        unfinished = state.get("unfinished_eval")
        self.unfinished = None if unfinished is None else (int(unfinished[0]),
                                                           bool(unfinished[1]))
