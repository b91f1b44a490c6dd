"""Best-of-N selection: choosing one reply among the safe candidates.

``build_selector(method=...)`` returns the selector (with its fallback chain)
that the pipeline calls when ``best_of > 1``; see :mod:`.factory` for the chains.
"""

from middleware.selection.factory import METHODS, build_selector
from middleware.selection.selector import SelectionOutcome, Selector

__all__ = ["METHODS", "SelectionOutcome", "Selector", "build_selector"]
