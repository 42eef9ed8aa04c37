"""Subtask ids made into branch and directory names, and branch names judged as git does:
checked against the real `git check-ref-format`."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from reynolds.core.graph import Graph, Node
from reynolds.core.refnames import branch_problem
from reynolds.core.worktrees import SLUG_MAX, branch_of, merge_order, slug, slugs

TASK_ID = "0123456789abcdef0123456789abcdef"
# Subtask ids as users write them: any text the id rule allows, plus the awkward cases.
IDS = st.text(
    alphabet=st.sampled_from("abcXYZ019_.:@/[]-"), min_size=1, max_size=80
) | st.sampled_from(["..", ".lock", "a.lock", "@", "-x", "a//b", "x/", "HEAD", "-", "."])


def git_accepts_branch(name: str) -> bool:
    # Outside any repository: inside one, `--branch` reads "@" and "@{-1}" as branches there.
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, cwd="/"
    )
    return done.returncode == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(IDS, min_size=1, max_size=6, unique=True))
def test_every_slug_makes_a_branch_git_accepts_and_no_two_collide(ids: list[str]) -> None:
    made = slugs(ids)
    assert set(made) == set(ids)
    assert len({s.lower() for s in made.values()}) == len(ids)  # even ignoring case
    for name in made.values():
        assert 1 <= len(name) <= SLUG_MAX
        assert "/" not in name  # one directory, one ref component
        assert git_accepts_branch(branch_of(TASK_ID, name)), name


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab/.-@{}~^:?*[\\ HEADlock"), min_size=0, max_size=20))
def test_branch_names_are_judged_as_git_judges_them(name: str) -> None:
    if name == "@":  # git takes it, yet `@` means HEAD to every other command: refused
        assert branch_problem(name) is not None
        return
    assert (branch_problem(name) is None) == git_accepts_branch(name), name


def test_slugs_read_like_their_ids_and_number_what_would_collide() -> None:
    assert slugs(["migrate:tool-1", "migrate/tool 1", "Migrate:Tool-1"]) == {
        "migrate:tool-1": "migrate-tool-1",
        "migrate/tool 1": "migrate-tool-1-2",
        "Migrate:Tool-1": "Migrate-Tool-1-3",
    }
    assert slug("...") == "subtask"
    assert slug("x.lock") == "x-lock"
    assert slugs(["integrate!", "integrate"]) == {
        "integrate": "integrate",
        "integrate!": "integrate-2",
    }


def test_branches_merge_upstream_first_then_in_submission_order() -> None:
    nodes = [
        Node("late", 0, None, depends_on=("b",)),
        Node("b", 1, None),
        Node("a", 2, None),
        Node("c", 3, None, depends_on=("late", "a")),
    ]
    graph = Graph.build(nodes)
    assert merge_order(graph, ["c", "a", "late", "b"]) == ["b", "a", "late", "c"]
    assert merge_order(graph, ["c", "b"]) == ["b", "c"]
