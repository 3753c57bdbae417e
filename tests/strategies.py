"""Hypothesis strategies shared by the tests: awkward task names, frames of real lines, traces, task trees.

Trees are built as records (:class:`TaskInfo`, :class:`TaskTree`) directly:
the renderers only read records, and records can be deeper than any chain of
live tasks a test could afford. Frames point at real lines of this file, so
a rendered ``File "...", line N`` can be checked against the line it names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from hypothesis import strategies as st

from async_trace import ExecutorThread, TaskInfo, TaskOrigin, TaskState, TaskTree, TraceData, TraceFrame

HERE = __file__
with open(HERE, encoding="utf-8") as _f:
    LINES = len(_f.readlines())

#: Names that have broken printers: control characters, astral and combining characters, empty, quotes.
AWKWARD_NAMES = [
    "",
    "line\nbreak",
    "tab\there",
    "cr\rlf\n",
    "emoji \U0001f600\U0001f680",
    "e\u0301 combining",
    "zero\u200bwidth",
    "quote ' and \"",
    'File "/x.py", line 1, in forged',
    "caf\xe9",
    "arrows ↑ ← ├── └── │",
    "lone \ud800 surrogate",
    "\x00nul",
]

task_names = st.one_of(st.sampled_from(AWKWARD_NAMES), st.text(max_size=12))


class FakeTask:
    """Stands for a task in a frame's ``task``: only ``get_name`` is read."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


class BrokenTask:
    """A Future-like whose ``get_name`` raises (a custom task factory's): named by the fallback rule."""

    def get_name(self) -> str:
        raise RuntimeError("no name")


def frame(
    name: str,
    line: int | None,
    *,
    filename: str | None = HERE,
    indent: int = 0,
    task: Any = None,
    is_executor: bool = False,
    is_process: bool = False,
    in_app: bool = True,
) -> TraceFrame:
    return {
        "name": name,
        "line": line,
        "filename": filename if line is not None else None,
        "indent": indent,
        "task": task,
        "is_executor": is_executor,
        "is_process": is_process,
        "in_app": in_app,
    }


func_names = st.sampled_from(["main", "worker", "Class.method", "<module>", "_private", "f\u00e9"])

frame_tasks = st.one_of(st.none(), task_names.map(FakeTask), st.just(BrokenTask()))


@st.composite
def frames(draw: st.DrawFn) -> TraceFrame:
    """A frame of a real line of this file, or a line-less one (a root task's)."""
    line = draw(st.one_of(st.none(), st.integers(1, LINES)))
    return frame(
        draw(func_names),
        line,
        task=draw(frame_tasks),
        is_executor=draw(st.booleans()),
    )


def reindent(found: list[TraceFrame]) -> list[TraceFrame]:
    for i, f in enumerate(found):
        f["indent"] = i
    return found


@st.composite
def traces(draw: st.DrawFn, max_frames: int = 8) -> TraceData:
    found = reindent(draw(st.lists(frames(), max_size=max_frames)))
    # Stand-ins for tasks (their labels are what is tested), typed as the dict's Task field.
    current = cast("asyncio.Task[Any] | None", draw(frame_tasks))
    return {"frames": found, "current_task": current, "in_executor": draw(st.booleans())}


states: st.SearchStrategy[TaskState] = st.sampled_from(
    ["running", "pending", "done", "failed", "cancelled", "finished"]
)
origins: st.SearchStrategy[TaskOrigin] = st.sampled_from(["root", "traced", "unknown", "elided"])
frame_tuples = st.lists(frames(), max_size=3).map(lambda fs: tuple(reindent(fs)))
threads = st.builds(ExecutorThread, name=task_names, ident=st.integers(1, 2**40), frames=frame_tuples)


def _info(children: st.SearchStrategy[tuple[TaskInfo, ...]]) -> st.SearchStrategy[TaskInfo]:
    @st.composite
    def build(draw: st.DrawFn) -> TaskInfo:
        origin = draw(origins)
        # An elided entry's name is ours (``... N task hops elided ...``), never a task's.
        name = f"... {draw(st.integers(1, 9))} task hops elided ..." if origin == "elided" else None
        return TaskInfo(
            name=name if origin == "elided" else draw(st.one_of(st.none(), task_names)),
            id=draw(st.one_of(st.none(), st.integers(1, 40))),
            state=draw(states),
            origin=origin,
            task=None,
            created_at=draw(frame_tuples),
            suspended_at=draw(frame_tuples),
            executor_threads=tuple(draw(st.lists(threads, max_size=2))),
            children=draw(children),
            awaited_by=tuple(draw(st.lists(st.integers(1, 40), max_size=7))),
        )

    return build()


task_infos: st.SearchStrategy[TaskInfo] = st.recursive(
    _info(st.just(())),
    lambda kids: _info(st.lists(kids, max_size=3).map(tuple)),
    max_leaves=12,
)

task_trees = st.lists(task_infos, max_size=3).map(lambda roots: make_tree(tuple(roots)))


def make_tree(roots: tuple[TaskInfo, ...]) -> TaskTree:
    """A tree without a loop (as ``pstree`` builds from another process's data)."""
    return TaskTree(loop=cast(Any, None), roots=roots)


def chain(depth: int, name: str = "t") -> TaskTree:
    """A chain of ``depth`` tasks, each created by the one above: deeper than recursion allows, if asked."""
    info: TaskInfo | None = None
    for i in range(depth - 1, -1, -1):
        info = TaskInfo(
            name=f"{name}-{i}",
            id=i + 1,
            state="pending",
            origin="traced" if i else "root",
            task=None,
            created_at=(frame("spawn", 10, indent=0),) if i else (),
            suspended_at=(frame("wait", 20),),
            executor_threads=(),
            children=() if info is None else (info,),
            awaited_by=(i,) if i else (),
        )
    assert info is not None
    return make_tree((info,))


def frames_with_lines(tree: TaskTree) -> list[tuple[str, int]]:
    """``(filename, line)`` of every frame a tree's traceback style prints as a ``File`` line."""
    out: list[tuple[str, int]] = []
    for _, info in tree.walk():
        for group in (info.created_at, info.suspended_at, *(t.frames for t in info.executor_threads)):
            # Each block most recent call last, as the traceback style prints it.
            out.extend((f["filename"], f["line"]) for f in reversed(group) if f["line"] is not None and f["filename"])
    return out


# --- spawn trees: what the property tests run as real tasks -----------------------------------

#: A tree of task spawns: the list of its children, each reached through an edge kind
#: (``create_task``, ``gather``, ``await``, ``executor``, ...: the test gives the kinds).
SpawnTree = list[tuple[str, "SpawnTree"]]
#: A spawn tree whose nodes may finish early: ``(finishes early, [(edge, child), ...])``.
LifeTree = tuple[bool, list[tuple[str, "LifeTree"]]]


def spawn_depth(tree: SpawnTree) -> int:
    return 1 + max((spawn_depth(sub) for _, sub in tree), default=0)


def spawn_trees(edges: list[str], *, max_leaves: int = 12, max_depth: int = 6) -> st.SearchStrategy[SpawnTree]:
    """Trees of depth up to ``max_depth`` and fan-out up to 4 (bounded in size to keep examples quick)."""
    leaf: st.SearchStrategy[SpawnTree] = st.just([])
    return st.recursive(
        leaf,
        lambda children: st.lists(st.tuples(st.sampled_from(edges), children), min_size=1, max_size=4),
        max_leaves=max_leaves,
    ).filter(lambda t: spawn_depth(t) <= max_depth)


def life_depth(node: LifeTree) -> int:
    return 1 + max((life_depth(sub) for _, sub in node[1]), default=0)


def life_trees(
    edges: list[str], normalise: Callable[[LifeTree], LifeTree], *, max_leaves: int = 10, max_depth: int = 6
) -> st.SearchStrategy[LifeTree]:
    """Spawn trees where a third of the nodes finish early; ``normalise`` makes each one runnable."""
    leaf: st.SearchStrategy[LifeTree] = st.just((False, []))

    def node(children: st.SearchStrategy[list[tuple[str, LifeTree]]]) -> st.SearchStrategy[LifeTree]:
        return st.tuples(st.sampled_from([False, False, True]), children)

    tree = st.recursive(
        leaf,
        lambda sub: node(st.lists(st.tuples(st.sampled_from(edges), sub), min_size=1, max_size=3)),
        max_leaves=max_leaves,
    )
    return tree.map(normalise).filter(lambda t: life_depth(t) <= max_depth)
