"""The async-frame chain: immutable linked nodes carried in a ContextVar.

Each task-creation point and executor hop pushes one node. A node holds its
parent node, the creating stack as cheap data and a weak reference to the task
that was running there (its creator); the task a node created is the creator
recorded by the node below it. The creating stack is a flat tuple ``(code, lasti, code, lasti,
...)``, innermost first: code objects and instruction offsets only, never
frame objects or locals, and no line numbers (decoding them on 3.11+ costs
about 40% of a frame walk, so :mod:`._collect` resolves them on demand).

Everything on the capture path is written for the hot path of
``loop.create_task``: few allocations, identity comparisons only (hashing a
code object walks its bytecode on 3.12+), no string work.
"""

from __future__ import annotations

import collections
import functools
import operator
from collections.abc import Callable
from contextvars import ContextVar
from types import CodeType, CoroutineType, FrameType
from typing import Any, Final
from weakref import ref as _weakref

from ._compat import HAS_MONITORING
from ._config import settings
from ._speedups import CORE

__all__: list[str] = []

#: Flat stack data: ``(code, lasti, code, lasti, ...)``, innermost first. A
#: ``(None, n)`` pair marks ``n`` frames elided by ``max_frames``.
Frames = tuple[CodeType | int | None, ...]
_EMPTY: Final[Frames] = ()
_tuple_new: Final = tuple.__new__

# C-level field accessors, as namedtuple uses: reading ``node.parent`` costs
# what ``node[0]`` does. (A Python @property would cost a frame per read.)
field_getter: Final[Callable[[int, str], Any]] = getattr(
    collections, "_tuplegetter", lambda index, doc: property(operator.itemgetter(index), doc=doc)
)


class Node(tuple):  # type: ignore[type-arg]
    """One hop of the chain, immutable: ``parent``, ``depth``, ``code``, ``frames``, ``creator_ref``.

    A tuple subclass: made by one C call, compared by identity, fields read
    by name through C-level accessors. The layout is private to this module:
    everything else reads fields by name. Nodes never hold tasks, frames or
    locals. The task a node created is the creator of the node below it (or
    the running task), so consecutive siblings created by one task from one
    place can share one node.
    """

    __slots__ = ()

    #: The node of the hop above (the creator's), ``None`` at the top of the chain.
    parent: Node | None
    #: How many nodes the chain ending here has (``compact`` keeps it bounded).
    depth: int
    #: The code of the created task's coroutine (``TaskNode``, ``RootNode``): a
    #: task whose coroutine has another code inherited the node, untraced.
    #: ``None`` for the other kinds.
    code: CodeType | None
    #: The capturing stack, innermost first (see ``Frames``); empty for roots and elided hops.
    frames: Frames
    #: A weak reference to the task running where the node was captured, ``None`` outside a task.
    creator_ref: Any

    @property
    def creator(self) -> Any:
        """The task running where this node was captured, if still alive."""
        ref = self.creator_ref
        return ref() if ref is not None else None

    def clone(self, parent: Node | None, depth: int) -> Node:
        return _tuple_new(type(self), (parent, depth, *self[2:]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} depth={self.depth} frames={len(self.frames) // 2}>"


for _index, (_name, _doc) in enumerate(
    [
        ("parent", "The node of the hop above, or None."),
        ("depth", "How many nodes the chain ending here has."),
        ("code", "The created coroutine's code (task and root nodes), else None."),
        ("frames", "The capturing stack as (code, lasti, ...) pairs, innermost first."),
        ("creator_ref", "A weak reference to the task running at the capture, or None."),
    ]
):
    setattr(Node, _name, field_getter(_index, _doc))


class TaskNode(Node):
    """A task created at ``frames[0]``; ``frames`` run up to the creator's coroutine."""

    __slots__ = ()


class ExecutorNode(Node):
    """A call handed to an executor thread by the coroutine at ``frames[0]``; ``creator`` made the call."""

    __slots__ = ()


class ProcessNode(Node):
    """A call handed to a process pool by the coroutine at ``frames[0]``, in process ``pid``.

    Never in a context: the call runs in another process, which gets the
    chain symbolized (see :mod:`._process`). It is the origin recorded on an
    exception the call raised, re-raised here.
    """

    __slots__ = ()

    pid: int


ProcessNode.pid = field_getter(5, "The id of the process the call was made from.")


class ServerNode(Node):
    """A server started listening at ``frames[0]`` (``create_server``, ``start_server``, a framework's serve()).

    Set in the context the server's accept callbacks run in, so its
    connections' protocol callbacks, and the tasks they create, hang below
    the line that started the server; ``creator`` started it.
    """

    __slots__ = ()


class PendingNode(Node):
    """``run_coroutine_threadsafe`` called at ``frames[0]``; the task is made later, on the loop."""

    __slots__ = ()


class RootNode(Node):
    """A task with no traced parent: the root of its chain (``frames`` is empty).

    ``name`` is the root task's name, for traces collected after the task is
    gone (``None`` where it could not be known: see :func:`named_root`);
    ``adopted`` marks a root made for a task created untraced (see
    :func:`adopt_root`).
    """

    __slots__ = ()

    name: str | None
    adopted: bool
    #: The tracing epoch the root was made in (see ``epoch``).
    epoch: int


RootNode.name = field_getter(5, "The root task's name, or None if not known.")
RootNode.adopted = field_getter(6, "Whether the root was made for a task created while tracing was off.")
RootNode.epoch = field_getter(7, "The tracing epoch the root was made in.")


class ThreadRootNode(Node):
    """The root of a chain that starts in a thread no traced hop led to; ``name`` is the thread's.

    Only ever the parent of a ``run_coroutine_threadsafe`` pending node:
    never a task's own node, so ``code`` is ``None``.
    """

    __slots__ = ()

    name: str


ThreadRootNode.name = field_getter(5, "The thread's name.")


class ElidedNode(Node):
    """Stands for ``hops`` hops dropped to keep the chain within ``max_depth``.

    ``creator`` is that of the outermost dropped hop: the task created by the
    node above this one.
    """

    __slots__ = ()

    hops: int


ElidedNode.hops = field_getter(5, "How many hops this node stands for.")


def make(kind: type[Node], parent: Node | None, depth: int, code: Any, frames: Frames, creator: Any = None) -> Node:
    return _tuple_new(kind, (parent, depth, code, frames, creator))


def make_process(hop: Node, pid: int) -> ProcessNode:
    """``hop`` (an executor node) as the node of a call handed to a process pool from process ``pid``."""
    return _tuple_new(ProcessNode, (hop.parent, hop.depth, None, hop.frames, hop.creator_ref, pid))


def make_root(code: Any, name: str | None = None, *, adopted: bool = False) -> RootNode:
    return _tuple_new(RootNode, (None, 1, code, _EMPTY, None, name, adopted, settings.epoch))


def named_copy(root: RootNode, name: str) -> RootNode:
    return _tuple_new(RootNode, (None, 1, root.code, _EMPTY, None, name, root.adopted, root.epoch))


#: The frames of a hop whose creation line is unknown: a task that no hook saw
#: being built (``asyncio.Task(...)`` on 3.14+, or on uvloop on 3.10/3.11).
UNKNOWN_LINE: Final[Frames] = (None, -1)


def make_thread_root(name: str) -> ThreadRootNode:
    return _tuple_new(ThreadRootNode, (None, 1, None, _EMPTY, None, name))


def is_adopted(node: Node) -> bool:
    """Whether ``node`` is the root made for a task created while tracing was off."""
    return type(node) is RootNode and node.adopted


def make_elided(parent: Node | None, count: int, creator: Any) -> ElidedNode:
    depth = 1 if parent is None else parent.depth + 1
    return _tuple_new(ElidedNode, (parent, depth, None, _EMPTY, creator, count))


#: The node of the innermost hop of the code running in this context.
CURRENT: Final[ContextVar[Node | None]] = ContextVar("async_trace.current_node", default=None)

if CORE is not None:
    # The compiled core reads the variable and the node kinds from here, once (see _ccore.c).
    CORE.setup_nodes(CURRENT, TaskNode, RootNode, ExecutorNode)


# --- warnings -------------------------------------------------------------


# --- helpers shared by capture and collection --------------------------------


def _slot(obj: Any, coroutine: str, generator: str) -> Any:
    # Read only where the object's type defines it (a coroutine's, a generator's, Cython's): a
    # __getattr__ of the program's class (an awaitable that raises KeyError) never runs.
    kind = type(obj)
    if hasattr(kind, coroutine):
        return getattr(obj, coroutine)
    if hasattr(kind, generator):
        return getattr(obj, generator)
    return None


def coro_code(coro: Any) -> Any:
    """The code a task's coroutine runs (``cr_code``, ``gi_code``), or ``None`` for another awaitable."""
    if type(coro) is CoroutineType:
        return coro.cr_code
    return _slot(coro, "cr_code", "gi_code")


def stop_frame(coro: Any) -> FrameType | None:
    """The frame of a task's coroutine: where the task's own stack ends (``None`` for another awaitable)."""
    if type(coro) is CoroutineType:
        return coro.cr_frame
    frame = _slot(coro, "cr_frame", "gi_frame")
    return frame if type(frame) is FrameType else None


def task_name(task: Any) -> str:
    try:
        return str(task.get_name())
    except Exception:  # noqa: BLE001 - a Future subclass from a custom factory
        return f"<{type(task).__name__} at {id(task):#x}>"


def retagged(node: Node, code: Any) -> Node:
    """``node`` naming ``code`` as its task's coroutine (a task factory wrapped the one it was made for)."""
    return _tuple_new(type(node), (node.parent, node.depth, code, node.frames, node.creator_ref, *node[5:]))


def creator_ref(task: Any) -> Any:
    """A weak reference to ``task`` for a node's ``creator_ref`` (``None`` for an object that cannot have one)."""
    # weakref.ref returns the existing reference when there is one, so every
    # node captured in one task shares a single weakref object.
    try:
        return _weakref(task)
    except TypeError:  # a Future-like object from a custom factory
        return None


# --- the coroutines tasks run (3.10/3.11) ----------------------------------------

#: Whether :data:`task_codes` is kept: where no unwind hook records origins (3.10/3.11).
KEEP_TASK_CODES: Final = not HAS_MONITORING
#: Codes kept in :data:`task_codes`, at most (a program that makes code objects as it runs).
MAX_TASK_CODES: Final = 65_536
#: 3.10/3.11: the code of the coroutine of every traced task made so far, by ``id``, weakly
#: (the entry goes with the code: a module the program unloads is freed as untraced). When an
#: exception is printed, a traceback frame running none of these was not the outermost frame of
#: a traced task: the exception did not come through it from another task (see ``_origins``).
#: Full: any coroutine frame may have been.
task_codes: Final[dict[int, Any]] = {}


def note_task_code(code: Any) -> None:
    """Remember ``code`` as a coroutine some traced task runs (3.10/3.11; see :data:`task_codes`)."""
    if KEEP_TASK_CODES and type(code) is CodeType and len(task_codes) < MAX_TASK_CODES:
        key = id(code)
        task_codes[key] = _weakref(code, functools.partial(_forget_code, key))


def _forget_code(key: int, ref: Any, codes: dict[int, Any] = task_codes) -> None:
    # Called by the garbage collector, in any thread, when a remembered code dies; also while the
    # interpreter shuts down, when this module's globals may be gone already (hence ``codes``).
    if codes.get(key) is ref:
        codes.pop(key, None)


def is_task_code(code: CodeType) -> bool:
    """Whether ``code`` runs some traced task's coroutine (3.10/3.11; see :data:`task_codes`)."""
    ref = task_codes.get(id(code))
    return ref is not None and ref() is code
