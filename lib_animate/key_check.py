"""One accounting of a weight file's tensors against the names and shapes a model expects.

Every loader (motion modules, the UNet conversion, the pose guider, the image encoder) states what
it expects and raises one :class:`~lib_animate.errors.WeightsFileError` that lists, for the file,
the missing keys, the unexpected keys and the tensors of the wrong shape -- the first few of each,
with counts -- instead of failing later inside ``load_state_dict`` or, worse, loading half a model.
"""

from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Sequence, Tuple

from .errors import WeightsFileError

MAX_LISTED = 8
Shape = Tuple[int, ...]


def _shape(value) -> Shape:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c, ... and 5 more``."""
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return shown + (f", ... and {more} more" if more > 0 else "")


@dataclass
class KeyReport:
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    wrong_shape: List[Tuple[str, Shape, Shape]] = field(default_factory=list)  # (key, got, expected)
    other: List[str] = field(default_factory=list)  # further problems a loader found (e.g. duplicate targets)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape or self.other)

    def problems(self, name: Callable[[str], str] = str) -> List[str]:
        """One phrase per kind of problem; ``name`` turns a key into the name the user's file uses."""
        out = []
        if self.missing:
            out.append(f"{len(self.missing)} missing keys: {listing([name(k) for k in self.missing])}")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} unexpected keys: {listing(self.unexpected)}")
        if self.wrong_shape:
            shapes = [f"{name(k)} {got} (expected {want})" for k, got, want in self.wrong_shape]
            out.append(f"{len(self.wrong_shape)} tensors with the wrong shape: {listing(shapes)}")
        return out + self.other

    def raise_if_bad(self, prefix: str, name: Callable[[str], str] = str) -> None:
        """Raise ``WeightsFileError("<prefix>: <problems>.")`` unless everything matched."""
        if not self.ok:
            raise WeightsFileError(f"{prefix}: " + "; ".join(self.problems(name)) + ".")


def compare_keys(tensors: Mapping[str, object], expected: Mapping[str, object]) -> KeyReport:
    """``tensors`` (name -> tensor or shape) against ``expected`` (name -> shape or tensor), sorted."""
    report = KeyReport()
    report.missing = sorted(k for k in expected if k not in tensors)
    report.unexpected = sorted(k for k in tensors if k not in expected)
    report.wrong_shape = sorted(
        (k, _shape(tensors[k]), _shape(expected[k])) for k in expected if k in tensors and _shape(tensors[k]) != _shape(expected[k])
    )
    return report
