"""`validate_ranges`: every numeric config field is a number of its type, finite, within its bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from tokenreward.config import validate_ranges


@dataclass
class Example:
    rate: float = field(default=0.5, metadata={"gt": 0.0, "max": 1.0})
    steps: int = field(default=3, metadata={"min": 1})
    share: float | None = field(default=None, metadata={"min": 0.0, "lt": 1.0})
    clip: float = field(default=math.inf, metadata={"gt": 0.0, "allow_inf": True})
    margin: float = 1.0  # no bounds: any finite number

    def __post_init__(self):
        validate_ranges(self)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"rate": math.inf}, "--rate must be a finite number, got inf"),
        ({"rate": -math.inf}, "--rate must be a finite number, got -inf"),
        ({"rate": math.nan}, "--rate must be a finite number, got nan"),
        ({"margin": math.inf}, "--margin must be a finite number, got inf"),
        ({"margin": -math.inf}, "--margin must be a finite number, got -inf"),
        ({"clip": math.nan}, "--clip must be a finite number, got nan"),
        ({"clip": -math.inf}, "--clip must be greater than 0.0, got -inf"),
        ({"rate": True}, "--rate must be a number, got True"),
        ({"steps": False}, "--steps must be a whole number, got False"),
        ({"steps": 2.0}, "--steps must be a whole number, got 2.0"),
        ({"steps": "3"}, "--steps must be a whole number, got '3'"),
        ({"rate": 0.0}, "--rate must be greater than 0.0, got 0.0"),
        ({"rate": 1.5}, "--rate must be at most 1.0, got 1.5"),
        ({"steps": 0}, "--steps must be at least 1, got 0"),
        ({"share": 1.0}, "--share must be less than 1.0, got 1.0"),
        ({"share": -0.1}, "--share must be at least 0.0, got -0.1"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_flag(values, message):
    with pytest.raises(ValueError) as err:
        Example(**values)
    assert str(err.value) == message


def test_values_within_the_bounds_pass():
    example = Example(rate=1.0, steps=1, share=0.0, clip=math.inf, margin=-3)
    assert (example.rate, example.steps, example.share, example.clip, example.margin) == (1.0, 1, 0.0, math.inf, -3)
    assert Example(share=None, rate=1).rate == 1  # an int is a number for a float field
