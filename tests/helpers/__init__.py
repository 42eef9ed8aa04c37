"""Code the tests import: callables for python actions, and process helpers."""
