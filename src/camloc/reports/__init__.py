"""Reports: what results look like to a person (text summaries now; the HTML report and viewer build here)."""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {"format_summary": ".summary"}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .summary import format_summary as format_summary
