"""A progress bar with the key live metrics (tqdm on stderr)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Progress over ``total`` units (env steps or epochs).

    :param total: the end of training, in ``unit``.
    :param initial: where a resumed run starts.
    :param enabled: draw the bar (off in tests and when stderr is not a terminal and CI is set).
    """

    def __init__(self, total: int | None, unit: str = "step", initial: int = 0,
                 enabled: bool = True, description: str = "") -> None:
        self._bar = None
        self._last = initial
        self._shown: dict[str, Any] = {}
        if enabled and total:
            from tqdm import tqdm

            interactive = sys.stderr.isatty()
            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=description,
                             dynamic_ncols=True, mininterval=0.5 if interactive else 30.0,
                             file=sys.stderr, leave=True)

    def update(self, position: int, **metrics: Any) -> None:
        """Move the bar to ``position`` and show ``metrics`` beside it."""
        if self._bar is None:
            return
        # Agents that collect whole rollouts can end a little past the budget; keep the bar whole.
        position = min(position, self._bar.total)
        if position > self._last:
            self._bar.update(position - self._last)
            self._last = position
        if metrics:
            # Merged, so metrics reported at different moments (losses every few batches,
            # validation every epoch) stay side by side.
            self._shown.update({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                for k, v in metrics.items()})
            self._bar.set_postfix(self._shown, refresh=False)

    def set_total(self, total: int, unit: str, initial: int = 0) -> None:
        """Count in a finer unit once the component knows it (e.g. a model's batches: the
        batches per epoch are known only after its dataset is loaded)."""
        if self._bar is None:
            return
        self._bar.reset(total=total)
        self._bar.unit = unit
        self._last = 0
        if initial:
            self._bar.update(min(initial, total))
            self._last = initial

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
