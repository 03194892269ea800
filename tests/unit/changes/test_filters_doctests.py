"""The examples in the docstrings of ``ripple.changes.filters`` run and hold."""

import doctest
import importlib
import pkgutil

import pytest

import ripple.changes.filters as filters

MODULES = [filters.__name__] + [
    f"{filters.__name__}.{info.name}" for info in pkgutil.iter_modules(filters.__path__)
]


def test_every_module_of_the_package_is_listed():
    assert len(MODULES) == 9


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    # testmod prints each failing example with its expected and actual output.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring examples"
