"""sharedctypes: not built yet; every public name raises NotImplementedError when used."""

from ._placeholder import placeholder

__all__ = [
    "RawValue",
    "RawArray",
    "Value",
    "Array",
    "copy",
    "synchronized",
]

RawValue = placeholder(__name__, "RawValue", "shared ctypes")
RawArray = placeholder(__name__, "RawArray", "shared ctypes")
Value = placeholder(__name__, "Value", "shared ctypes")
Array = placeholder(__name__, "Array", "shared ctypes")
copy = placeholder(__name__, "copy", "shared ctypes")
synchronized = placeholder(__name__, "synchronized", "shared ctypes")
