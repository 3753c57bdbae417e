/* async_trace._ccore: the optional compiled core.
 *
 * The same functions as their Python definitions, for the hot paths only, and
 * never the only copy: async_trace._speedups chooses this module once, at
 * import, and the Python definitions stay the reference (and the fallback,
 * with ASYNC_TRACE_NO_EXTENSIONS=1, on PyPy, on a free-threaded build or with
 * no compiler). Each function here mirrors one Python function line for line;
 * where the common case ends, it returns None and the Python code carries on,
 * so behaviour outside the common case is the Python code's by construction.
 *
 *   walk(frame, stop, remember=True)  = async_trace._stack.walk
 *   forget()                          = async_trace._stack._forget (the walk cache)
 *   task_node(loop, coro, shared)     = the common case inlined in _capture's create_task wrapper
 *   on_unwind(code, offset, exc)      = the early returns of _record_unwind._on_unwind
 *   append_chain(frames, node, ...)   = async_trace._collect.append_chain (task hops; the rest in Python)
 *   append_frames(out, shown, ...)    = async_trace._collect.append_frames
 *   resolve_uncached(frames)          = async_trace._frames.resolve_uncached
 *   registry_method(cls)              = async_trace._direct_tasks._Registry.add
 *   RunInExecutor(original, fallback) = the run_in_executor wrapper's common case (_capture)
 *   in_flight()                       = _lineage.in_flight.node, for the compiled create_task wrapper
 *
 * Only the public C API, plus the frame struct's f_lasti on 3.10 (which has no
 * PyFrame_GetLasti). Node layout: see async_trace/_chain.py (parent, depth,
 * code, frames, creator_ref, ...). The module keeps state in static variables
 * set once by the setup functions: single-phase initialisation, main
 * interpreter, GIL required (the package does not import it on a
 * free-threaded build).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <traceback.h>

#if PY_VERSION_HEX < 0x030A0000
#error "async_trace._ccore needs Python 3.10 or later"
#endif

/* 3.11+ keeps a frame's code and offset in an interpreter frame and makes its frame object only
 * when asked (PyEval_GetFrame, PyFrame_GetBack, sys._getframe); a coroutine's frame object then
 * lives as long as the coroutine (217-249 bytes per task). Where CPython installed its internal
 * headers, the creating stack is read from the interpreter frames instead, with CPython's own
 * inline accessors; setup.py builds without this (ASYNC_TRACE_PUBLIC_API_ONLY) when they do not
 * compile, and the frame-object code below is used. 3.10's frames are objects already. */
#if PY_VERSION_HEX >= 0x030B0000 && !defined(ASYNC_TRACE_PUBLIC_API_ONLY) && defined(__has_include)
#if __has_include(<internal/pycore_frame.h>)
#define AT_IFRAMES 1
#endif
#endif
#ifdef AT_IFRAMES
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define AT_UNDEF_BUILD_CORE 1
#endif
#include <internal/pycore_frame.h>
#if PY_VERSION_HEX >= 0x030E0000
#include <internal/pycore_interpframe.h>
#include <internal/pycore_genobject.h>
#endif
#ifdef AT_UNDEF_BUILD_CORE
#undef Py_BUILD_CORE
#endif
#endif

/* State one thread sets around a call that may run another thread's code (the GIL released). */
#if defined(_MSC_VER)
#define THREAD_LOCAL __declspec(thread)
#else
#define THREAD_LOCAL _Thread_local
#endif

/* --- frames ------------------------------------------------------------- */

static inline long
frame_lasti(PyFrameObject *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return (long)PyFrame_GetLasti(f);
#else
    /* 3.10 counts instructions; frame.f_lasti reports bytes. */
    return f->f_lasti < 0 ? -1 : (long)f->f_lasti * 2;
#endif
}

/* A new reference to the caller of f, or NULL (no error set). */
static inline PyFrameObject *
frame_back(PyFrameObject *f)
{
    return PyFrame_GetBack(f);
}

#ifdef AT_IFRAMES
/* Interpreter frames, read as PyEval_GetFrame, PyFrame_GetBack, PyFrame_GetLasti and
 * sys._getframemodulename read them, without making frame objects. Only frames of the running
 * call's callers are read: they stay alive, unchanged but for their offsets, until it returns. */

/* f, or the first frame past it that PyFrame_GetBack would not skip (entry shims, frames not yet started). */
static inline _PyInterpreterFrame *
iframe_complete(_PyInterpreterFrame *f)
{
    while (f != NULL && _PyFrame_IsIncomplete(f)) {
        f = f->previous;
    }
    return f;
}

/* The innermost Python frame of this thread (PyEval_GetFrame's), or NULL. */
static inline _PyInterpreterFrame *
iframe_top(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return iframe_complete(PyThreadState_GET()->current_frame);
#else
    return iframe_complete(PyThreadState_GET()->cframe->current_frame);
#endif
}

static inline _PyInterpreterFrame *
iframe_back(_PyInterpreterFrame *f)
{
    return iframe_complete(f->previous);
}

/* Borrowed. */
static inline PyCodeObject *
iframe_code(_PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return _PyFrame_GetCode(f);
#else
    return f->f_code;
#endif
}

static inline long
iframe_lasti(_PyInterpreterFrame *f)
{
    int lasti = _PyInterpreterFrame_LASTI(f);
    return lasti < 0 ? -1 : (long)lasti * (long)sizeof(_Py_CODEUNIT);
}

/* The coroutine or generator running in f (borrowed), or NULL. */
static inline PyObject *
iframe_generator(_PyInterpreterFrame *f)
{
    if (f->owner != FRAME_OWNED_BY_GENERATOR) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030E0000
    return (PyObject *)_PyGen_GetGeneratorFromFrame(f);
#else
    return (PyObject *)_PyFrame_GetGenerator(f);
#endif
}

#if PY_VERSION_HEX >= 0x030C0000
/* sys._getframemodulename's answer for f: its function's __module__ (borrowed), or NULL. */
static inline PyObject *
iframe_module(_PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030E0000
    if (PyStackRef_IsNull(f->f_funcobj)) {
        return NULL;
    }
    PyObject *func = PyStackRef_AsPyObjectBorrow(f->f_funcobj);
#else
    PyObject *func = f->f_funcobj;
#endif
    return func != NULL && PyFunction_Check(func) ? ((PyFunctionObject *)func)->func_module : NULL;
}
#endif
#endif /* AT_IFRAMES */

static void clear_siblings(void);

/* getattr(obj, name, None) as 3.13's PyObject_GetOptionalAttr: 1 found, 0 not (*out NULL), -1 error. */
static int
optional_attr(PyObject *obj, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, out);
#else
    *out = PyObject_GetAttr(obj, name);
    if (*out != NULL) {
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
#endif
}

/* --- walk --------------------------------------------------------------- */

static PyObject *handle_run = NULL;   /* asyncio.events.Handle._run.__code__ */
static PyObject *settings = NULL;     /* async_trace._config.settings */
static PyObject *last = NULL;         /* the latest capture: a tuple, never mutated */
static PyObject *str_max_frames = NULL;
static PyObject *str_max_depth = NULL;
static PyObject *name_root = NULL;      /* _lineage.name_root */
static PyObject *protocol_method = NULL;   /* _frames.protocol_method */
static PyObject *connection_parent = NULL; /* _lineage.connection_parent */
static PyObject *protocol_frames = NULL;   /* _frames.protocol_frames */
static PyObject *repaired_node = NULL;     /* _lineage.repaired_node */
static PyObject *named_key = NULL;      /* name_root's cache, as in _lineage: the root ... */
static PyObject *named_value = NULL;    /* ... and its named copy */

static long
settings_long(PyObject *name)
{
    PyObject *value = PyObject_GetAttr(settings, name);
    if (value == NULL) {
        return -1;
    }
    long result = PyLong_AsLong(value);
    Py_DECREF(value);
    return result;
}

/* Whether the pair last[i], last[i + 1] is (code, lasti). */
static inline int
matches(PyObject *code, long lasti, Py_ssize_t i)
{
    if (PyTuple_GET_ITEM(last, i) != code) {
        return 0;
    }
    PyObject *item = PyTuple_GET_ITEM(last, i + 1);
    if (!PyLong_Check(item)) {
        return 0;
    }
    long value = PyLong_AsLong(item);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return value == lasti;
}

static PyObject *
remember_result(PyObject *result, int remember)
{
    if (remember && result != NULL) {
        Py_INCREF(result);
        Py_SETREF(last, result);
    }
    return result;
}

/* A place in the stack being walked: a frame object (owned), or with AT_IFRAMES an interpreter frame
 * of the running call's callers (borrowed). Neither: past the outermost frame. */
typedef struct {
    PyFrameObject *obj;
#ifdef AT_IFRAMES
    _PyInterpreterFrame *iframe;
#endif
} Cursor;

/* Where a walk ends, inclusive: a frame object, or with AT_IFRAMES the frame a coroutine runs in
 * (both borrowed; NULL: none of that kind). */
typedef struct {
    PyFrameObject *frame;
    PyObject *coro;
#ifdef AT_IFRAMES
    _PyInterpreterFrame *iframe;
#endif
} Stop;

static inline int
cursor_live(const Cursor *c)
{
#ifdef AT_IFRAMES
    if (c->iframe != NULL) {
        return 1;
    }
#endif
    return c->obj != NULL;
}

/* A new reference. */
static inline PyCodeObject *
cursor_code(const Cursor *c)
{
#ifdef AT_IFRAMES
    if (c->iframe != NULL) {
        return (PyCodeObject *)Py_NewRef(iframe_code(c->iframe));
    }
#endif
    return PyFrame_GetCode(c->obj);
}

static inline long
cursor_lasti(const Cursor *c)
{
#ifdef AT_IFRAMES
    if (c->iframe != NULL) {
        return iframe_lasti(c->iframe);
    }
#endif
    return frame_lasti(c->obj);
}

static inline int
cursor_at(const Cursor *c, const Stop *stop)
{
#ifdef AT_IFRAMES
    if (c->iframe != NULL) {
        return c->iframe == stop->iframe || (stop->frame != NULL && c->iframe->frame_obj == stop->frame) ||
               (stop->coro != NULL && iframe_generator(c->iframe) == stop->coro);
    }
#endif
    return c->obj != NULL && c->obj == stop->frame;
}

static inline void
cursor_back(Cursor *c)
{
#ifdef AT_IFRAMES
    if (c->iframe != NULL) {
        c->iframe = iframe_back(c->iframe);
        return;
    }
#endif
    PyFrameObject *back = frame_back(c->obj);
    Py_SETREF(c->obj, back);
}

static inline void
cursor_clear(Cursor *c)
{
    Py_CLEAR(c->obj);
#ifdef AT_IFRAMES
    c->iframe = NULL;
#endif
}

/* Appends (code, lasti) of the frame at c to out. */
static int
append_pair(PyObject *out, const Cursor *c)
{
    PyCodeObject *code = cursor_code(c);
    int err = PyList_Append(out, (PyObject *)code);
    Py_DECREF(code);
    if (err < 0) {
        return -1;
    }
    PyObject *lasti = PyLong_FromLong(cursor_lasti(c));
    if (lasti == NULL) {
        return -1;
    }
    err = PyList_Append(out, lasti);
    Py_DECREF(lasti);
    return err;
}

/* _stack._walk_elided: out holds the pairs walked so far (``head`` pairs when the walk passed
 * max_frames) and then every pair up to the stop; keeps the first max_frames - max_frames // 4 of
 * head, a (None, n) marker and the outermost max_frames // 4 (at least 1), as the Python code's
 * deque does. A new tuple. */
static PyObject *
elided_frames(PyObject *out, Py_ssize_t head, long max_frames)
{
    Py_ssize_t keep_outer = max_frames / 4 > 1 ? (Py_ssize_t)(max_frames / 4) : 1;
    Py_ssize_t total = PyList_GET_SIZE(out) / 2;
    Py_ssize_t cut = (Py_ssize_t)max_frames - keep_outer;
    Py_ssize_t kept = cut < head ? (cut > 0 ? cut : 0) : head;
    Py_ssize_t from_head = head - kept < keep_outer ? head - kept : keep_outer;
    Py_ssize_t pushed = from_head + (total - head);
    Py_ssize_t tail = pushed < keep_outer ? pushed : keep_outer;
    PyObject *result = PyTuple_New(2 * (kept + 1 + tail));
    if (result == NULL) {
        return NULL;
    }
    Py_ssize_t j = 0;
    for (Py_ssize_t k = 0; k < 2 * kept; k++) {
        PyTuple_SET_ITEM(result, j++, Py_NewRef(PyList_GET_ITEM(out, k)));
    }
    PyObject *count = PyLong_FromSsize_t(pushed - tail);
    if (count == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    PyTuple_SET_ITEM(result, j++, Py_NewRef(Py_None));
    PyTuple_SET_ITEM(result, j++, count);
    for (Py_ssize_t k = 2 * (total - tail); k < 2 * total; k++) {
        PyTuple_SET_ITEM(result, j++, Py_NewRef(PyList_GET_ITEM(out, k)));
    }
    return result;
}

/* _stack.walk from the frame at f (consumed) to stop: the flat (code, lasti, ...) tuple, shared
 * with the previous walk's when identical. A new reference. */
static PyObject *
walk_cursor(Cursor *f, const Stop *stop, int remember)
{
    PyObject *result = NULL;
    PyObject *out = NULL;
    PyObject *cached = Py_NewRef(last);
    Py_ssize_t n = PyTuple_GET_SIZE(cached);
    Py_ssize_t i = 0;
    /* Fast path: the stack matches the previous capture. */
    while (cursor_live(f) && i < n) {
        PyCodeObject *code = cursor_code(f);
        int same = matches((PyObject *)code, cursor_lasti(f), i);
        Py_DECREF(code);
        if (!same) {
            break;
        }
        i += 2;
        if (cursor_at(f, stop)) {
            cursor_clear(f);
        }
        else {
            cursor_back(f);
        }
    }
    if (!cursor_live(f)) {
        /* The whole stack matched the previous capture, or a prefix of it. */
        if (i == n) {
            result = Py_NewRef(cached);
        }
        else {
            result = remember_result(PyTuple_GetSlice(cached, 0, i), remember);
        }
        goto done;
    }
    /* Slow path: copy the matched prefix, walk the rest. */
    out = PyList_New(0);
    if (out == NULL) {
        goto done;
    }
    for (Py_ssize_t j = 0; j < i; j++) {
        if (PyList_Append(out, PyTuple_GET_ITEM(cached, j)) < 0) {
            goto done;
        }
    }
    long max_frames = settings_long(str_max_frames);
    if (max_frames == -1 && PyErr_Occurred()) {
        goto done;
    }
    long remaining = max_frames - (long)(i / 2);
    Py_ssize_t head = -1; /* pairs walked when the walk passed max_frames */
    while (cursor_live(f)) {
        if (append_pair(out, f) < 0) {
            goto done;
        }
        if (cursor_at(f, stop)) {
            break;
        }
        cursor_back(f);
        remaining -= 1;
        if (remaining <= 0 && head < 0 && cursor_live(f)) {
            head = PyList_GET_SIZE(out) / 2;
        }
    }
    if (head >= 0) {
        /* Deeper than max_frames: the outermost frames kept, not remembered (as in the Python code). */
        result = elided_frames(out, head, max_frames);
    }
    else {
        result = remember_result(PyList_AsTuple(out), remember);
    }
done:
    Py_XDECREF(out);
    cursor_clear(f);
    Py_DECREF(cached);
    return result;
}

/* walk_cursor from f (consumed) to stop_obj: a frame object, the running coroutine (an interpreter-frame
 * walk only), or None or NULL: the loop's Handle._run (where collection would cut), else the outermost frame. */
static PyObject *
walk_from(Cursor *f, PyObject *stop_obj, int remember)
{
    Stop stop = {0};
    Cursor probe = {0};
    if (stop_obj != NULL && stop_obj != Py_None) {
        if (PyFrame_Check(stop_obj)) {
            stop.frame = (PyFrameObject *)stop_obj;
        }
        else if (PyCoro_CheckExact(stop_obj) && f->obj == NULL) {
            stop.coro = stop_obj;
        }
        else {
            PyErr_SetString(PyExc_TypeError, "walk() needs a frame or None to stop at");
            cursor_clear(f);
            return NULL;
        }
    }
    else {
        probe.obj = (PyFrameObject *)Py_XNewRef(f->obj);
#ifdef AT_IFRAMES
        probe.iframe = f->iframe;
#endif
        while (cursor_live(&probe)) {
            PyCodeObject *code = cursor_code(&probe);
            int hit = (PyObject *)code == handle_run;
            Py_DECREF(code);
            if (hit) {
                break;
            }
            cursor_back(&probe);
        }
        stop.frame = probe.obj;
#ifdef AT_IFRAMES
        stop.iframe = probe.iframe;
#endif
    }
    PyObject *result = walk_cursor(f, &stop, remember);
    cursor_clear(&probe);
    return result;
}

/* walk(frame, stop, remember): see async_trace._stack.walk. frame and stop
 * are borrowed frame objects or None; stop may be NULL. Returns a new reference. */
static PyObject *
walk_impl(PyObject *frame_obj, PyObject *stop_obj, int remember)
{
    if (frame_obj != Py_None && !PyFrame_Check(frame_obj)) {
        PyErr_SetString(PyExc_TypeError, "walk() needs a frame or None");
        return NULL;
    }
    Cursor f = {0};
    f.obj = frame_obj == Py_None ? NULL : (PyFrameObject *)Py_NewRef(frame_obj);
    return walk_from(&f, stop_obj, remember);
}

static PyObject *
ccore_walk(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *usage = "walk(frame, stop, *, remember=True)";
    int remember = 1;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s takes 2 positional arguments", usage);
        return NULL;
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, k);
            if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "remember") != 0) {
                PyErr_Format(PyExc_TypeError, "%s got an unexpected keyword argument %R", usage, name);
                return NULL;
            }
            remember = PyObject_IsTrue(args[nargs + k]);
            if (remember < 0) {
                return NULL;
            }
        }
    }
    if (handle_run == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "async_trace._ccore.setup_walk() was not called");
        return NULL;
    }
    return walk_impl(args[0], args[1], remember);
}

static PyObject *
ccore_forget(PyObject *module, PyObject *unused)
{
    Py_CLEAR(named_key);
    Py_CLEAR(named_value);
    clear_siblings();
    Py_SETREF(last, PyTuple_New(0));
    if (last == NULL) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
ccore_last(PyObject *module, PyObject *unused)
{
    return Py_NewRef(last);
}

static PyObject *
ccore_setup_walk(PyObject *module, PyObject *args)
{
    PyObject *run, *config;
    if (!PyArg_ParseTuple(args, "OO:setup_walk", &run, &config)) {
        return NULL;
    }
    Py_XSETREF(handle_run, Py_NewRef(run));
    Py_XSETREF(settings, Py_NewRef(config));
    Py_RETURN_NONE;
}

/* --- task_node ---------------------------------------------------------- */

static PyObject *current_var = NULL;     /* async_trace._chain.CURRENT */
static PyObject *task_node_type = NULL;  /* _chain.TaskNode */
static PyObject *root_node_type = NULL;  /* _chain.RootNode */
static PyObject *executor_node_type = NULL; /* _chain.ExecutorNode */
static PyObject *current_task = NULL;    /* asyncio.current_task */
static PyObject *frame_module = NULL;    /* sys._getframemodulename (3.12+) or None */
static PyObject *getframe = NULL;        /* sys._getframe */
static PyObject *asyncio_callers = NULL; /* frozenset of asyncio's module names (3.12+) */
static PyObject *asyncio_creators = NULL;/* {id(code): code} of asyncio's helpers (before 3.12) */
static PyObject *protocol_cache = NULL;  /* _frames._protocol_cache: {id(code): (code, bool)} */
static PyObject *str_get_coro = NULL;
static PyObject *str_cr_code = NULL;
static PyObject *str_cr_frame = NULL;

/* A new reference to the referent of a weak reference, or NULL (dead; no error set). */
static PyObject *
referent(PyObject *ref)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(ref, &obj) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return obj;
#else
    PyObject *obj = PyWeakref_GetObject(ref);
    if (obj == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return obj == Py_None ? NULL : Py_NewRef(obj);
#endif
}

#ifndef AT_IFRAMES
/* _frames.creating_frame: the frame past asyncio's own helpers. frame owned, result owned. */
static PyFrameObject *
creating_frame(PyFrameObject *frame)
{
    for (int k = 0; k < 8 && frame != NULL; k++) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        PyObject *key = PyLong_FromVoidPtr(code);
        PyObject *found = key == NULL ? NULL : PyDict_GetItemWithError(asyncio_creators, key);
        Py_XDECREF(key);
        Py_DECREF(code);
        if (PyErr_Occurred()) {
            Py_DECREF(frame);
            return NULL;
        }
        if (found == NULL || found != (PyObject *)code) {
            return frame;
        }
        PyFrameObject *back = frame_back(frame);
        Py_DECREF(frame);
        frame = back;
    }
    return frame;
}
#endif

/* func(depth): sys._getframemodulename or sys._getframe. */
static PyObject *
call_with_depth(PyObject *func, long depth)
{
    PyObject *arg = PyLong_FromLong(depth);
    if (arg == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_CallOneArg(func, arg);
    Py_DECREF(arg);
    return result;
}

/* The frame of the line that asked for the task (3.12+: past asyncio's
 * callers, found by module name without making their frame objects). The
 * caller of this function is the create_task wrapper: depth ``base`` is its caller (1 for
 * the Python wrapper, whose frame is on top; 0 for the compiled one, which has none).
 * Sets *start (the first frame to walk) and *asker (the asking frame; no frame there: the
 * caller's case ends), both owned (cursor_clear), and *asker_depth, the asker's depth for
 * sys._getframe (see asker_frame). ``by_module`` 0: as capture() finds them on every version (the
 * walk from the caller, asyncio's helpers stepped over by code for the asker only). */
static int
asking_frames(int base, int by_module, Cursor *start, Cursor *asker, long *asker_depth)
{
    long depth = 0;
#ifdef AT_IFRAMES
    _PyInterpreterFrame *f = iframe_top();
    if (f == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "task_node() called with no Python frame");
        return -1;
    }
    for (; depth < base && f != NULL; depth++) {
        f = iframe_back(f);
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (by_module && frame_module != Py_None) {
        for (;;) {
            if (f == NULL) {
                break;
            }
            PyObject *name = iframe_module(f); /* borrowed */
            int inside = name == NULL ? 0 : PySet_Contains(asyncio_callers, name);
            if (inside < 0) {
                return -1;
            }
            if (!inside) {
                break;
            }
            f = iframe_back(f);
            depth += 1;
        }
        if (f == NULL) {
            PyErr_SetString(PyExc_ValueError, "call stack is not deep enough");
            return -1;
        }
        start->iframe = asker->iframe = f;
        *asker_depth = depth;
        return 0;
    }
#endif
    if (f == NULL) {
        PyErr_SetString(PyExc_ValueError, "call stack is not deep enough");
        return -1;
    }
    start->iframe = f;
    /* _frames.creating_frame: past asyncio's own helpers, by code (before 3.12). */
    for (int k = 0; k < 8 && f != NULL; k++) {
        PyCodeObject *code = iframe_code(f);
        PyObject *key = PyLong_FromVoidPtr(code);
        PyObject *found = key == NULL ? NULL : PyDict_GetItemWithError(asyncio_creators, key);
        Py_XDECREF(key);
        if (PyErr_Occurred()) {
            start->iframe = NULL;
            return -1;
        }
        if (found == NULL || found != (PyObject *)code) {
            break;
        }
        f = iframe_back(f);
        depth += 1;
    }
    asker->iframe = f;
    *asker_depth = depth;
    return 0;
#else
    if (by_module && frame_module != Py_None) {
        depth = base;
        for (;;) {
            PyObject *name = call_with_depth(frame_module, depth);
            if (name == NULL) {
                return -1;
            }
            int inside = PySet_Contains(asyncio_callers, name);
            Py_DECREF(name);
            if (inside < 0) {
                return -1;
            }
            if (!inside) {
                break;
            }
            depth += 1;
        }
        PyObject *frame = call_with_depth(getframe, depth);
        if (frame == NULL) {
            return -1;
        }
        start->obj = (PyFrameObject *)frame;
        asker->obj = (PyFrameObject *)Py_NewRef(frame);
        *asker_depth = depth;
        return 0;
    }
    PyFrameObject *here = PyEval_GetFrame(); /* borrowed: the Python wrapper's frame, or (base 0) its caller's */
    if (here == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "task_node() called with no Python frame");
        return -1;
    }
    start->obj = base == 0 ? (PyFrameObject *)Py_NewRef(here) : frame_back(here);
    if (start->obj == NULL) {
        PyErr_SetString(PyExc_ValueError, "call stack is not deep enough");
        return -1;
    }
    asker->obj = creating_frame((PyFrameObject *)Py_NewRef(start->obj));
    if (asker->obj == NULL && PyErr_Occurred()) {
        cursor_clear(start);
        return -1;
    }
    *asker_depth = -1;
    return 0;
#endif
}

/* The asker's frame object, for the Python code that needs one (a protocol's method): made on
 * demand from an interpreter frame. Borrowed (owned by asker); NULL with an error set. */
static PyFrameObject *
asker_frame(Cursor *asker, long depth)
{
#ifdef AT_IFRAMES
    if (asker->obj == NULL && asker->iframe != NULL) {
        asker->obj = (PyFrameObject *)call_with_depth(getframe, depth);
        if (asker->obj != NULL && asker->obj->f_frame != asker->iframe) {
            Py_CLEAR(asker->obj);
            PyErr_SetString(PyExc_RuntimeError, "sys._getframe() found another frame than the asking one");
        }
        return asker->obj;
    }
#endif
    (void)depth;
    return asker->obj;
}

/* A root task's context keeps its unnamed root: the nodes below get a named copy (_lineage.name_root,
 * whose latest answer is kept here as there). A new reference. */
static PyObject *
named_root(PyObject *root, PyObject *task)
{
    if (named_key != root) {
        PyObject *named = PyObject_CallFunctionObjArgs(name_root, root, task, NULL);
        if (named == NULL) {
            return NULL;
        }
        Py_XSETREF(named_key, Py_NewRef(root));
        Py_XSETREF(named_value, named);
    }
    return Py_NewRef(named_value);
}

/* A node of kind (a Node subclass of tuple): (parent, depth, code, frames, creator_ref). */
static PyObject *
new_node(PyObject *kind, PyObject *parent, PyObject *depth, PyObject *code, PyObject *frames, PyObject *ref)
{
    PyObject *items = PyTuple_Pack(5, parent, depth, code, frames, ref);
    if (items == NULL) {
        return NULL;
    }
    PyObject *args = PyTuple_Pack(1, items);
    Py_DECREF(items);
    if (args == NULL) {
        return NULL;
    }
    PyObject *node = PyTuple_Type.tp_new((PyTypeObject *)kind, args, NULL);
    Py_DECREF(args);
    return node;
}

/* Whether ``node`` is a TaskNode or RootNode naming ``code``: the node of the task running it (_lineage.is_own). */
static inline int
is_own_node(PyObject *node, PyObject *code)
{
    PyObject *kind = (PyObject *)Py_TYPE(node);
    return (kind == task_node_type || kind == root_node_type) && PyTuple_GET_SIZE(node) >= 5 &&
           PyTuple_GET_ITEM(node, 2) == code;
}

/* The node that call put in the context the task starts in, for its duration (a factory, eager_start=,
 * a caller's context=), else NULL: _lineage.in_first_step names it for a wrapped coroutine started
 * eagerly (in_flight()). Borrowed: that context holds it while it is set. */
static THREAD_LOCAL PyObject *creating_node = NULL;

#if defined(AT_IFRAMES) && PY_VERSION_HEX >= 0x030C0000
/* _lineage.in_first_step's common case (3.12+), set up by setup_first_step: */
static PyObject *fs_in_flight = NULL;   /* _lineage.in_flight (a threading.local; .node) */
static PyObject *fs_eager_tasks = NULL; /* 3.12/3.13: asyncio's set of tasks in their eager first step; else None */
static PyObject *fs_base_loop = NULL;   /* asyncio.base_events.BaseEventLoop */
static PyObject *fs_str_node = NULL, *fs_str_get_loop = NULL;

/* _compat's in_eager_first_step: whether task runs its eager first step now, its coroutine called from
 * start. 3.12/3.13: asyncio keeps such tasks in a set; 3.14+: a stdlib loop runs every later step from
 * Handle._run (uvloop runs steps from C: no frame tells them apart there). 1, 0, -1 on an error. */
static int
eager_first_step(PyObject *task, _PyInterpreterFrame *start)
{
    if (fs_eager_tasks != Py_None) {
        return PySet_Contains(fs_eager_tasks, task);
    }
    if ((PyObject *)iframe_code(start) == handle_run) {
        return 0;
    }
    PyObject *loop = PyObject_CallMethodNoArgs(task, fs_str_get_loop);
    if (loop == NULL) {
        return -1;
    }
    int result = PyObject_IsInstance(loop, fs_base_loop);
    Py_DECREF(loop);
    return result;
}

/* _lineage.in_first_step, for the running task in its eager first step (built directly, as aiohttp
 * builds each request's handler task) holding ``inherited``, its creator's node: its own node, made
 * from the frames that built it (the coroutine's caller up to the frame running inherited's code) and
 * set in its context, without making the coroutine's frame object. NULL with no error: not this case
 * (the Python code decides: not in its first step, a node a wrapper holds in flight, a chain to
 * compact); NULL with an error set on a failure. A new reference. */
static PyObject *
first_step_node(PyObject *task, PyObject *coro, PyObject *inherited)
{
    if (fs_in_flight == NULL || !PyTuple_Check(inherited) || PyTuple_GET_SIZE(inherited) < 5 ||
        creating_node == inherited) {
        return NULL;
    }
    _PyInterpreterFrame *f = iframe_top();
    while (f != NULL && iframe_generator(f) != coro) {
        f = iframe_back(f);
    }
    _PyInterpreterFrame *start = f == NULL ? NULL : iframe_back(f);
    if (start == NULL) {
        return NULL;
    }
    int eager = eager_first_step(task, start);
    if (eager <= 0) {
        return NULL;
    }
    PyObject *held = PyObject_GetAttr(fs_in_flight, fs_str_node);
    if (held == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_XDECREF(held);
    if (held == inherited) {
        return NULL; /* the Python wrapper's task, through a factory that wrapped the coroutine */
    }
    PyObject *kind = (PyObject *)Py_TYPE(inherited);
    _PyInterpreterFrame *stop = NULL;
    if (kind == task_node_type || kind == root_node_type) {
        PyObject *target = PyTuple_GET_ITEM(inherited, 2);
        for (_PyInterpreterFrame *g = start; g != NULL; g = iframe_back(g)) {
            if ((PyObject *)iframe_code(g) == target) {
                stop = g;
                break;
            }
        }
    }
    long depth = PyLong_AsLong(PyTuple_GET_ITEM(inherited, 1));
    long max_depth = depth == -1 && PyErr_Occurred() ? -1 : settings_long(str_max_depth);
    if (max_depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (depth + 1 > max_depth) {
        return NULL; /* compacted by the Python code */
    }
    Cursor here = {0};
    here.iframe = start;
    PyObject *frames;
    if (stop != NULL) {
        Stop until = {0};
        until.iframe = stop;
        frames = walk_cursor(&here, &until, 1);
    }
    else {
        frames = walk_from(&here, NULL, 1);
    }
    PyObject *made_code = frames == NULL ? NULL : PyObject_GetAttr(coro, str_cr_code);
    PyObject *child_depth = made_code == NULL ? NULL : PyLong_FromLong(depth + 1);
    PyObject *node = child_depth == NULL ? NULL
                                         : new_node(task_node_type, inherited, child_depth, made_code, frames, Py_None);
    Py_XDECREF(frames);
    Py_XDECREF(made_code);
    Py_XDECREF(child_depth);
    if (node == NULL) {
        return NULL;
    }
    PyObject *token = PyContextVar_Set(current_var, node);
    if (token == NULL) {
        Py_DECREF(node);
        return NULL;
    }
    Py_DECREF(token);
    return node;
}
#endif

/* Where both compiled wrappers start, the common case of _capture.capture: the running task of loop
 * is traced (its context holds its own TaskNode or RootNode, or another node that
 * _lineage.repaired_node repairs and stores; a root is named as _lineage.name_root names it) and its
 * chain has room for one more hop below max_depth. Sets *parent, *task, *stop (where the walk ends:
 * the task's coroutine, with AT_IFRAMES, else its frame; all three owned) and *depth. 1 in the common case, 0
 * outside it, -1 on an error; nothing is set but in the common case. ``check_outer``: the create_task
 * wrapper's check that this is not our wrapper inside another of ours (_pushed_by_outer_wrapper).
 * ``callbacks``: also 2 when no task runs and the context holds a TaskNode with room below max_depth
 * (a callback of a traced task, a protocol method: uvicorn creates each request's task there); then
 * *task and *stop are NULL (capture() walks to the loop's Handle._run, and the node names no creator). */
static int
running_parent(PyObject *loop, int check_outer, int callbacks, PyObject **parent_out, PyObject **task_out,
               PyObject **stop_out, long *depth_out)
{
    PyObject *parent = NULL, *task = NULL, *coro = NULL, *code = NULL;
    int result = -1;
    if (PyContextVar_Get(current_var, NULL, &parent) < 0) {
        return -1;
    }
    if (parent == NULL) {
        return 0;
    }
    if (parent == Py_None) {
        result = 0; /* no node: capture() (the Python code) decides */
        goto done;
    }
    task = PyObject_CallOneArg(current_task, loop);
    if (task == NULL) {
        goto done;
    }
    if (task == Py_None) {
        result = 0;
        /* A TaskNode only: a RootNode may be one an outer wrapper of ours holds in flight
         * (_pushed_by_outer_wrapper), a PendingNode is run_coroutine_threadsafe's (capture()'s cases). */
        if (callbacks && (PyObject *)Py_TYPE(parent) == task_node_type && PyTuple_GET_SIZE(parent) == 5) {
            long depth = PyLong_AsLong(PyTuple_GET_ITEM(parent, 1));
            long max_depth = depth == -1 && PyErr_Occurred() ? -1 : settings_long(str_max_depth);
            if (max_depth == -1 && PyErr_Occurred()) {
                result = -1;
            }
            else if (depth < max_depth) {
                *parent_out = parent;
                *task_out = NULL;
                *stop_out = NULL;
                *depth_out = depth;
                parent = NULL;
                result = 2;
            }
        }
        goto done;
    }
    if (check_outer && (PyObject *)Py_TYPE(parent) == task_node_type && PyTuple_GET_ITEM(parent, 4) != Py_None) {
        PyObject *made_by = referent(PyTuple_GET_ITEM(parent, 4));
        Py_XDECREF(made_by);
        if (made_by == task) {
            result = 0; /* our wrapper inside another of ours: the Python code decides */
            goto done;
        }
    }
    coro = PyObject_CallMethodNoArgs(task, str_get_coro);
    code = coro != NULL ? PyObject_GetAttr(coro, str_cr_code) : NULL;
    if (code == NULL) {
        goto done;
    }
    if (!is_own_node(parent, code)) {
        /* Not the running task's own node (an eager task built directly, in its first step, as aiohttp
         * builds its handlers; a task built untraced): repaired and stored by the Python code, as
         * capture() repairs it, then on with the common case. */
        if (repaired_node == NULL || !PyCoro_CheckExact(coro)) {
            result = 0;
            goto done;
        }
        PyObject *own = NULL;
#if defined(AT_IFRAMES) && PY_VERSION_HEX >= 0x030C0000
        own = first_step_node(task, coro, parent); /* an eager task built directly, in its first step */
        if (own == NULL && PyErr_Occurred()) {
            goto done;
        }
#endif
        if (own == NULL) {
            own = PyObject_CallFunctionObjArgs(repaired_node, task, coro, parent, NULL);
        }
        if (own == NULL) {
            goto done;
        }
        Py_SETREF(parent, own);
        if (!is_own_node(parent, code)) {
            result = 0;
            goto done;
        }
    }
    long depth = PyLong_AsLong(PyTuple_GET_ITEM(parent, 1));
    if (depth == -1 && PyErr_Occurred()) {
        goto done;
    }
    long max_depth = settings_long(str_max_depth);
    if (max_depth == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (depth >= max_depth) {
        result = 0; /* compacted by the Python code */
        goto done;
    }
    if ((PyObject *)Py_TYPE(parent) == root_node_type && PyTuple_GET_SIZE(parent) > 5 &&
        PyTuple_GET_ITEM(parent, 5) == Py_None) {
        PyObject *named = named_root(parent, task);
        if (named == NULL) {
            goto done;
        }
        Py_SETREF(parent, named);
    }
#ifdef AT_IFRAMES
    /* The walk stops at the frame the coroutine runs in, without making its frame object (which
     * would live as long as the coroutine). */
    PyObject *stop = PyCoro_CheckExact(coro) ? Py_NewRef(coro) : PyObject_GetAttr(coro, str_cr_frame);
#else
    PyObject *stop = PyObject_GetAttr(coro, str_cr_frame);
#endif
    if (stop == NULL) {
        goto done;
    }
    *parent_out = parent;
    *task_out = task;
    *stop_out = stop;
    *depth_out = depth;
    parent = task = NULL;
    result = 1;
done:
    Py_XDECREF(parent);
    Py_XDECREF(task);
    Py_XDECREF(coro);
    Py_XDECREF(code);
    return result;
}

/* Set by CreateTask while it hands a call outside the common case to the Python wrapper, whose first
 * task_node() call then answers None at once (and clears it: a nested creation computes its own). */
static THREAD_LOCAL int uncommon_told = 0;

/* task_node(loop, coro, shared): the node of a task that the running task of
 * ``loop`` creates from ``coro``, in the common case the create_task wrapper
 * inlines (a traced task creating a child of a coroutine): ``shared`` when it
 * is identical (the latest node), else a new one. None when the case is not
 * the common one: the Python code decides then. Errors propagate, as the
 * Python code's do (the wrapper falls back to untraced creation and warns). */
static PyObject *
task_node_impl(PyObject *loop, PyObject *coro, PyObject *shared, int base, PyObject **creator_out)
{
    if (current_var == NULL || handle_run == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "async_trace._ccore is not set up");
        return NULL;
    }
    PyObject *parent = NULL, *creator = NULL, *stop = NULL, *frames = NULL, *made_code = NULL, *ref = NULL;
    PyObject *result = NULL;
    Cursor start = {0}, asker = {0};
    long depth, asker_depth = -1;
    int common = running_parent(loop, 1, 1, &parent, &creator, &stop, &depth);
    if (common < 0) {
        return NULL;
    }
    if (common == 0) {
        Py_RETURN_NONE;
    }
    if (!PyCoro_CheckExact(coro)) {
        goto not_common; /* coro_code() of another awaitable: Python's */
    }
    /* No running task (common == 2): capture()'s frames, its walk to the loop's Handle._run, no creator. */
    if (asking_frames(base, common == 1, &start, &asker, &asker_depth) < 0) {
        goto done;
    }
    frames = walk_from(&start, stop, 1);
    if (frames == NULL) {
        goto done;
    }
    made_code = PyObject_GetAttr(coro, str_cr_code);
    if (made_code == NULL) {
        goto done;
    }
    ref = creator == NULL ? Py_NewRef(Py_None) : PyWeakref_NewRef(creator, NULL); /* the existing one if any */
    if (ref == NULL) {
        goto done;
    }
    if (!cursor_live(&asker) && common == 1) {
        goto not_common; /* asker.f_code fails in the Python code: its error, its warning */
    }
    if (cursor_live(&asker)) {
        /* protocol_method(asker), its cache hit inlined: a task a protocol method creates belongs to
         * the connection (_lineage.connection_parent, _frames.protocol_frames: Python's, called, with
         * the asker's frame object, made for them only). */
        PyCodeObject *asked = cursor_code(&asker);
        PyObject *key = PyLong_FromVoidPtr(asked);
        PyObject *hit = key == NULL ? NULL : PyDict_GetItemWithError(protocol_cache, key);
        Py_XDECREF(key);
        int is_protocol;
        if (hit != NULL && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 2 &&
            PyTuple_GET_ITEM(hit, 0) == (PyObject *)asked) {
            is_protocol = PyObject_IsTrue(PyTuple_GET_ITEM(hit, 1));
        }
        else if (PyErr_Occurred()) {
            is_protocol = -1;
        }
        else {
            PyFrameObject *frame = asker_frame(&asker, asker_depth);
            PyObject *answer = frame == NULL ? NULL : PyObject_CallOneArg(protocol_method, (PyObject *)frame);
            is_protocol = answer == NULL ? -1 : PyObject_IsTrue(answer);
            Py_XDECREF(answer);
        }
        if (is_protocol > 0) {
            PyObject *pair = PyObject_CallFunctionObjArgs(connection_parent, parent, (PyObject *)asked, ref, NULL);
            if (pair == NULL || !PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
                !PyTuple_Check(PyTuple_GET_ITEM(pair, 0)) || PyTuple_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) < 5) {
                if (pair != NULL) {
                    PyErr_SetString(PyExc_TypeError, "connection_parent() returned no (node, ref) pair");
                }
                Py_XDECREF(pair);
                Py_DECREF(asked);
                goto done;
            }
            Py_SETREF(parent, Py_NewRef(PyTuple_GET_ITEM(pair, 0)));
            Py_SETREF(ref, Py_NewRef(PyTuple_GET_ITEM(pair, 1)));
            Py_DECREF(pair);
            PyFrameObject *frame = asker_frame(&asker, asker_depth);
            PyObject *cut = frame == NULL ? NULL
                                          : PyObject_CallFunctionObjArgs(protocol_frames, frames, (PyObject *)frame, NULL);
            if (cut == NULL) {
                Py_DECREF(asked);
                goto done;
            }
            Py_SETREF(frames, cut);
            depth = PyLong_AsLong(PyTuple_GET_ITEM(parent, 1));
        }
        Py_DECREF(asked);
        if (is_protocol < 0 || PyErr_Occurred()) {
            goto done;
        }
    }
    if (common == 1 && Py_TYPE(shared) == (PyTypeObject *)task_node_type && PyTuple_GET_SIZE(shared) == 5 &&
        PyTuple_GET_ITEM(shared, 0) == parent && PyTuple_GET_ITEM(shared, 3) == frames &&
        PyTuple_GET_ITEM(shared, 2) == made_code && PyTuple_GET_ITEM(shared, 4) == ref) {
        result = Py_NewRef(shared);
        goto done;
    }
    {
        PyObject *child_depth = PyLong_FromLong(depth + 1);
        if (child_depth == NULL) {
            goto done;
        }
        result = new_node(task_node_type, parent, child_depth, made_code, frames, ref);
        Py_DECREF(child_depth);
    }
    goto done;
not_common:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(parent);
    if (creator_out != NULL && result != NULL && result != Py_None && creator != NULL && creator != Py_None) {
        *creator_out = creator; /* handed over */
    }
    else {
        Py_XDECREF(creator);
    }
    Py_XDECREF(stop);
    Py_XDECREF(frames);
    Py_XDECREF(made_code);
    Py_XDECREF(ref);
    cursor_clear(&start);
    cursor_clear(&asker);
    return result;
}

static PyObject *
ccore_task_node(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "task_node(loop, coro, shared) takes 3 arguments");
        return NULL;
    }
    if (uncommon_told) {
        /* Called by the Python wrapper that CreateTask just handed the call to: not the common case. */
        uncommon_told = 0;
        Py_RETURN_NONE;
    }
    return task_node_impl(args[0], args[1], args[2], 1, NULL);
}

/* setup_nodes(CURRENT, TaskNode, RootNode, ExecutorNode): the chain's variable and node kinds, which
 * every part of the core reads (async_trace._chain calls it once, where they are defined). */
static PyObject *
ccore_setup_nodes(PyObject *module, PyObject *args)
{
    PyObject *var, *task_kind, *root_kind, *executor_kind;
    if (!PyArg_ParseTuple(args, "O!O!O!O!:setup_nodes", &PyContextVar_Type, &var, &PyType_Type, &task_kind,
                          &PyType_Type, &root_kind, &PyType_Type, &executor_kind)) {
        return NULL;
    }
    Py_XSETREF(current_var, Py_NewRef(var));
    Py_XSETREF(task_node_type, Py_NewRef(task_kind));
    Py_XSETREF(root_node_type, Py_NewRef(root_kind));
    Py_XSETREF(executor_node_type, Py_NewRef(executor_kind));
    Py_RETURN_NONE;
}

/* setup_first_step(in_flight, eager_tasks, base_event_loop): what _lineage.in_first_step's compiled
 * common case reads (3.12+ with interpreter frames; elsewhere a no-op, the Python code deciding). */
static PyObject *
ccore_setup_first_step(PyObject *module, PyObject *args)
{
    PyObject *in_flight, *eager_tasks, *base_loop;
    if (!PyArg_ParseTuple(args, "OOO!:setup_first_step", &in_flight, &eager_tasks, &PyType_Type, &base_loop)) {
        return NULL;
    }
    if (eager_tasks != Py_None && !PyAnySet_Check(eager_tasks)) {
        PyErr_SetString(PyExc_TypeError, "setup_first_step(): eager_tasks must be a set or None");
        return NULL;
    }
#if defined(AT_IFRAMES) && PY_VERSION_HEX >= 0x030C0000
    if (fs_str_node == NULL) {
        fs_str_node = PyUnicode_InternFromString("node");
        fs_str_get_loop = PyUnicode_InternFromString("get_loop");
        if (fs_str_node == NULL || fs_str_get_loop == NULL) {
            return NULL;
        }
    }
    Py_XSETREF(fs_eager_tasks, Py_NewRef(eager_tasks));
    Py_XSETREF(fs_base_loop, Py_NewRef(base_loop));
    Py_XSETREF(fs_in_flight, Py_NewRef(in_flight));
#endif
    Py_RETURN_NONE;
}

static PyObject *
ccore_setup_tasks(PyObject *module, PyObject *args)
{
    PyObject *current, *modname, *frame_getter, *callers, *creators, *cache, *namer;
    PyObject *is_protocol, *connection, *cutter, *repairer;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO:setup_tasks", &current, &modname, &frame_getter, &callers, &creators,
                          &cache, &namer, &is_protocol, &connection, &cutter, &repairer)) {
        return NULL;
    }
    if (!PyFrozenSet_Check(callers) || !PyDict_Check(creators) || !PyDict_Check(cache)) {
        PyErr_SetString(PyExc_TypeError, "setup_tasks(): unexpected argument types");
        return NULL;
    }
    Py_XSETREF(current_task, Py_NewRef(current));
    Py_XSETREF(frame_module, Py_NewRef(modname));
    Py_XSETREF(getframe, Py_NewRef(frame_getter));
    Py_XSETREF(asyncio_callers, Py_NewRef(callers));
    Py_XSETREF(asyncio_creators, Py_NewRef(creators));
    Py_XSETREF(protocol_cache, Py_NewRef(cache));
    Py_XSETREF(name_root, Py_NewRef(namer));
    Py_XSETREF(protocol_method, Py_NewRef(is_protocol));
    Py_XSETREF(connection_parent, Py_NewRef(connection));
    Py_XSETREF(protocol_frames, Py_NewRef(cutter));
    Py_XSETREF(repaired_node, Py_NewRef(repairer));
    Py_RETURN_NONE;
}


/* --- the create_task wrapper -------------------------------------------- */

/* CreateTask(original, fallback): what _capture's create_task wrapper does,
 * for its common case (3.11+, a traced task creating a child of a coroutine,
 * no task factory, no context= of the caller's, only name=): it passes the
 * task its context with the node in it, sharing one node and one template
 * context between consecutive siblings, as the Python wrapper's _siblings does.
 * Every other call goes to ``fallback``, the Python wrapper, unchanged. A
 * method descriptor, as a function is: ``loop.create_task`` calls it with
 * the loop first. */

static int wrapper_active = 0;
/* The coroutine the compiled wrapper of this thread is making a task of, during the loop's call (else
 * NULL): the registration hook (3.11-3.13) leaves that task alone, traced already (uvloop builds its
 * tasks in C, so no frame of ours tells the hook). Compared by identity only, never dereferenced. Per
 * thread: the loop's call may release the GIL to another thread's loop. */
static THREAD_LOCAL PyObject *creating_coro = NULL;
static PyObject *trim_source_traceback = NULL; /* _capture._trim_source_traceback */
static PyObject *notify = NULL;                /* _capture._notify */
static PyObject *task_watchers = NULL;         /* _hooks.task_watchers (a list) */
static PyObject *task_codes = NULL;            /* _chain.task_codes (3.10/3.11), or None */
static PyObject *note_task_code = NULL;        /* _chain.note_task_code */
static PyObject *context_factories = NULL;     /* _loops.CONTEXT_FACTORIES: factories that take context= */
static PyObject *check_coroutine = NULL;       /* _capture._check_coroutine */
static PyObject *str_task_factory = NULL;
static PyObject *str_get_task_factory = NULL;
static PyObject *str_source_traceback = NULL;
static PyObject *str_name = NULL;
static PyObject *str_eager_start = NULL;
static PyObject *str_context = NULL;
static PyObject *str_done = NULL, *str_get_context = NULL, *str_get = NULL, *str_get_loop = NULL;
static PyObject *kw_context = NULL;      /* ("context",) */
static PyObject *kw_name_context = NULL; /* ("name", "context") */
/* The sibling cache: see _capture._SiblingCache (this one serves the compiled wrapper). */
static PyObject *sib_node = NULL, *sib_snapshot = NULL, *sib_template = NULL, *sib_owner_ref = NULL;
static PyObject *drop_siblings_callback = NULL;

/* Replace the sibling cache (stealing the references given; NULLs clear it). The old values are
 * released only once the new ones are in place: a release may run any code, this again included. */
static void
set_siblings(PyObject *node, PyObject *snapshot, PyObject *template, PyObject *owner_ref)
{
    PyObject *old[4] = {sib_node, sib_snapshot, sib_template, sib_owner_ref};
    sib_node = node;
    sib_snapshot = snapshot;
    sib_template = template;
    sib_owner_ref = owner_ref;
    for (int k = 0; k < 4; k++) {
        Py_XDECREF(old[k]);
    }
}

static void
clear_siblings(void)
{
    set_siblings(NULL, NULL, NULL, NULL);
}

static PyObject *
drop_siblings(PyObject *module, PyObject *ref)
{
    /* The creator died (any thread, from the garbage collector): nothing it kept in a ContextVar outlives it here. */
    if (sib_owner_ref == ref) {
        clear_siblings();
    }
    Py_RETURN_NONE;
}

static PyMethodDef drop_siblings_def = {"_drop_siblings", drop_siblings, METH_O, NULL};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *original;
    PyObject *fallback;
    PyObject *dict;
} CreateTask;

/* The Python wrapper, for every case but the common one. An exception it lets through (the
 * loop's own: a TypeError for a non-coroutine, a task factory's) leaves without the wrapper's
 * frame in its traceback: the compiled path shows no frame of ours. */
static PyObject *
call_fallback(CreateTask *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *result = PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    if (result != NULL || !PyFunction_Check(self->fallback)) {
        return result;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *entry = (PyTracebackObject *)tb;
        PyCodeObject *code = PyFrame_GetCode(entry->tb_frame);
        int ours = (PyObject *)code == PyFunction_GET_CODE(self->fallback);
        Py_DECREF(code);
        if (ours) {
            PyObject *rest = (PyObject *)entry->tb_next;
            Py_XINCREF(rest);
            Py_SETREF(tb, rest);
            if (value != NULL && PyException_SetTraceback(value, tb != NULL ? tb : Py_None) < 0) {
                PyErr_Clear();
            }
        }
    }
    PyErr_Restore(type, value, tb);
    return NULL;
}

/* Set CURRENT to node in ctx. */
static int
set_in(PyObject *ctx, PyObject *node)
{
    if (PyContext_Enter(ctx) < 0) {
        return -1;
    }
    PyObject *token = PyContextVar_Set(current_var, node);
    int failed = token == NULL;
    Py_XDECREF(token);
    if (PyContext_Exit(ctx) < 0) {
        return -1;
    }
    return failed ? -1 : 0;
}

/* The task's context (a new reference), as the Python wrapper's 3.11+ branch makes it. ``creator``: the
 * running task, or NULL (none runs). */
static PyObject *
task_context(PyObject *node, PyObject *creator)
{
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        return NULL;
    }
    if (sib_node != node) {
        /* A new node: this copy becomes the task's context; a template is made if a sibling follows. */
        if (set_in(ctx, node) < 0) {
            Py_DECREF(ctx);
            return NULL;
        }
        set_siblings(Py_NewRef(node), NULL, NULL, NULL);
        return ctx;
    }
    if (sib_snapshot != NULL && sib_template != NULL) {
        /* Held: comparing contexts compares their variables' values, which may run any code (this again). */
        PyObject *snapshot = Py_NewRef(sib_snapshot), *template = Py_NewRef(sib_template);
        int same = PyObject_RichCompareBool(snapshot, ctx, Py_EQ);
        Py_DECREF(snapshot);
        if (same != 0) {
            Py_DECREF(ctx);
            PyObject *copy = same < 0 ? NULL : PyContext_Copy(template);
            Py_DECREF(template);
            return copy;
        }
        Py_DECREF(template);
    }
    PyObject *template = PyContext_Copy(ctx);
    if (template == NULL || set_in(template, node) < 0) {
        Py_XDECREF(template);
        Py_DECREF(ctx);
        return NULL;
    }
    if (creator == NULL) {
        /* No owner to key the cache on (no running task): this task's copy only, as in Python. */
        Py_DECREF(ctx);
        PyObject *copy = PyContext_Copy(template);
        Py_DECREF(template);
        return copy;
    }
    PyObject *owner_ref = PyWeakref_NewRef(creator, drop_siblings_callback);
    if (owner_ref == NULL) {
        Py_DECREF(template);
        Py_DECREF(ctx);
        return NULL;
    }
    PyObject *copy = PyContext_Copy(template);
    set_siblings(Py_NewRef(node), ctx, template, owner_ref); /* ctx, template and owner_ref handed over */
    return copy;
}

/* After the loop made ``task`` (NULL: its error, passed on as untraced) with ``node`` (a reference
 * this takes): the Python wrapper's bookkeeping, which never raises. With a task factory
 * (``factory_ctx`` not NULL: the context handed to it, or None), the factory may have wrapped the
 * coroutine: _capture._check_coroutine renames the node (and remembers the code the task runs). */
static PyObject *
finish_task(PyObject *task, PyObject *node, PyObject *coro, PyObject *factory_ctx)
{
    if (task == NULL) {
        Py_DECREF(node);
        return NULL; /* the loop's own error, as untraced */
    }
    int note_code = 1;
    if (factory_ctx != NULL) {
        /* _check_coroutine's early returns inlined: a finished task (past caring), or the task runs
         * the coroutine it was made for (only the code it runs is remembered, below). */
        int finished = -1, same = 0;
        PyObject *answer = PyObject_CallMethodNoArgs(task, str_done);
        if (answer != NULL) {
            finished = PyObject_IsTrue(answer);
            Py_DECREF(answer);
        }
        if (finished == 0) {
            PyObject *made = PyObject_CallMethodNoArgs(task, str_get_coro);
            same = made == coro;
            Py_XDECREF(made);
        }
        PyErr_Clear();
        note_code = finished == 0 && same;
        if (finished != 1 && !same) {
            PyObject *call[4] = {task, node, coro, factory_ctx};
            PyObject *done = PyObject_Vectorcall(check_coroutine, call, 4, NULL);
            Py_XDECREF(done);
            PyErr_Clear();
        }
    }
    if (note_code && task_codes != NULL && task_codes != Py_None) {
        /* 3.10/3.11: remember the code the task runs (_chain.task_codes), as the Python wrapper does. */
        PyObject *code = PyTuple_GET_ITEM(node, 2);
        PyObject *key = PyLong_FromVoidPtr(code);
        int known = key == NULL ? -1 : PyDict_Contains(task_codes, key);
        Py_XDECREF(key);
        if (known == 0) {
            PyObject *done = PyObject_CallOneArg(note_task_code, code);
            Py_XDECREF(done);
        }
        PyErr_Clear();
    }
    Py_DECREF(node);
    /* Debug mode's source traceback, and the watchers: the Python wrapper's code, which never raises. */
    PyObject *source = PyObject_GetAttr(task, str_source_traceback);
    if (source == NULL) {
        PyErr_Clear();
    }
    else {
        int trim = source != Py_None && PyObject_IsTrue(source) == 1;
        PyErr_Clear();
        Py_DECREF(source);
        if (trim) {
            PyObject *done = PyObject_CallOneArg(trim_source_traceback, task);
            Py_XDECREF(done);
            PyErr_Clear();
        }
    }
    if (PyList_GET_SIZE(task_watchers) > 0) {
        PyObject *done = PyObject_CallFunctionObjArgs(notify, task_watchers, task, NULL);
        Py_XDECREF(done);
        PyErr_Clear();
    }
    return task;
}

static PyObject *
create_task_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CreateTask *self = (CreateTask *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (!wrapper_active || nargs != 2 || nkw > 2 || current_var == NULL) {
        return call_fallback(self, args, nargsf, kwnames);
    }
    /* name= (asyncio's own create_task passes it), eager_start= (3.14+; aiohttp passes it) and a
     * context= of the caller's (a TaskGroup's create_task(..., context=ctx) passes it on). */
    PyObject *name = NULL;       /* borrowed */
    PyObject *caller_ctx = NULL; /* borrowed */
    int eager_start = 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        if (PyUnicode_Check(key) && PyUnicode_Compare(key, str_name) == 0) {
            name = args[2 + k];
        }
        else if (PyUnicode_Check(key) && PyUnicode_Compare(key, str_eager_start) == 0) {
            eager_start = 1;
        }
        else if (PyUnicode_Check(key) && PyUnicode_Compare(key, str_context) == 0 &&
                 PyContext_CheckExact(args[2 + k])) {
            caller_ctx = args[2 + k];
        }
        else {
            PyErr_Clear();
            return call_fallback(self, args, nargsf, kwnames);
        }
    }
    PyObject *loop = args[0], *coro = args[1];
    /* No task factory (the loop's own attribute; a loop that hides it, as uvloop's, is asked). */
    PyObject *factory = PyObject_GetAttr(loop, str_task_factory);
    if (factory == NULL) {
        PyErr_Clear();
        factory = PyObject_CallMethodNoArgs(loop, str_get_task_factory);
        if (factory == NULL) {
            PyErr_Clear();
            return call_fallback(self, args, nargsf, kwnames);
        }
    }
    /* A task factory: the node is set as without one; whether the task is handed its context depends
     * on the factory (_loops.passes_context), and _check_coroutine looks at what it made. */
    int has_factory = factory != Py_None, factory_takes_context = 0;
    if (has_factory) {
        factory_takes_context = check_coroutine == NULL ? -1 : PySequence_Contains(context_factories, factory);
    }
    Py_DECREF(factory);
    if (factory_takes_context < 0) {
        PyErr_Clear();
        return call_fallback(self, args, nargsf, kwnames);
    }
    PyObject *creator = NULL;
    PyObject *shared = Py_NewRef(sib_node == NULL ? Py_None : sib_node); /* held: task_node may run any code */
    PyObject *node = task_node_impl(loop, coro, shared, 0, &creator);
    Py_DECREF(shared);
    if (node == NULL || node == Py_None) {
        /* Not the common case, or a failure: the Python wrapper decides (and warns for a failure). Not
         * the common case: the wrapper's first task_node call need not find that out again. */
        PyErr_Clear();
        int known_uncommon = node == Py_None;
        Py_XDECREF(node);
        Py_XDECREF(creator);
        uncommon_told = known_uncommon;
        PyObject *result = call_fallback(self, args, nargsf, kwnames);
        uncommon_told = 0;
        return result;
    }
    if (caller_ctx != NULL) {
        /* As the Python wrapper does: the caller chose the task's context; the node is set in it (as
         * Context.run would set it), so the task still runs in exactly that Context. A context
         * entered elsewhere: the Python wrapper warns, and creates the task. The node is in flight
         * for the call: a factory that wraps the coroutine and starts it eagerly runs its first step
         * inside the call, in that context, and takes the node as the task's own. */
        Py_XDECREF(creator);
        if (PyContext_Enter(caller_ctx) < 0) {
            PyErr_Clear();
            Py_DECREF(node);
            return call_fallback(self, args, nargsf, kwnames);
        }
        PyObject *token = PyContextVar_Set(current_var, node);
        int exited = PyContext_Exit(caller_ctx);
        if (token == NULL || exited < 0) {
            Py_XDECREF(token);
            PyErr_Clear();
            Py_DECREF(node);
            return call_fallback(self, args, nargsf, kwnames);
        }
        Py_DECREF(token);
        PyObject *outer = creating_coro, *outer_node = creating_node;
        creating_coro = coro;
        creating_node = node;
        PyObject *made = PyObject_Vectorcall(self->original, args, nargsf, kwnames);
        creating_coro = outer;
        creating_node = outer_node;
        return finish_task(made, node, coro, has_factory ? caller_ctx : NULL);
    }
    if (eager_start || (has_factory && !factory_takes_context)) {
        /* As the Python wrapper does for a keyword other than name= and context= or a factory that
         * may not take context=: the node is in the caller's context for the duration of the call,
         * and the task copies it. */
        Py_XDECREF(creator);
        PyObject *token = PyContextVar_Set(current_var, node);
        if (token == NULL) {
            PyErr_Clear();
            Py_DECREF(node);
            return call_fallback(self, args, nargsf, kwnames);
        }
        PyObject *outer = creating_coro, *outer_node = creating_node;
        creating_coro = coro;
        creating_node = node;
        PyObject *made = PyObject_Vectorcall(self->original, args, nargsf, kwnames);
        creating_coro = outer;
        creating_node = outer_node;
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (PyContextVar_Reset(current_var, token) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, tb);
        Py_DECREF(token);
        return finish_task(made, node, coro, has_factory ? Py_None : NULL);
    }
    PyObject *ctx = task_context(node, creator);
    Py_XDECREF(creator);
    if (ctx == NULL) {
        PyErr_Clear();
        Py_DECREF(node);
        return call_fallback(self, args, nargsf, kwnames);
    }
    PyObject *call_args[4] = {loop, coro, NULL, NULL};
    PyObject *task;
    PyObject *outer = creating_coro;
    creating_coro = coro;
    if (name != NULL) {
        call_args[2] = name;
        call_args[3] = ctx;
        task = PyObject_Vectorcall(self->original, call_args, 2, kw_name_context);
    }
    else {
        call_args[2] = ctx;
        task = PyObject_Vectorcall(self->original, call_args, 2, kw_context);
    }
    creating_coro = outer;
    PyObject *result = finish_task(task, node, coro, has_factory ? ctx : NULL);
    Py_DECREF(ctx);
    return result;
}

static PyObject *run_in_executor_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                            PyObject *kwnames);
static PyTypeObject RunInExecutorType;

/* CreateTask(original, fallback), RunInExecutor(original, fallback): one layout, one constructor. */
static PyObject *
create_task_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *original, *fallback;
    if (!PyArg_ParseTuple(args, "OO", &original, &fallback)) {
        return NULL;
    }
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", type->tp_name);
        return NULL;
    }
    CreateTask *self = PyObject_GC_New(CreateTask, type);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = type == &RunInExecutorType ? run_in_executor_vectorcall : create_task_vectorcall;
    self->original = Py_NewRef(original);
    self->fallback = Py_NewRef(fallback);
    self->dict = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
create_task_traverse(CreateTask *self, visitproc visit, void *arg)
{
    Py_VISIT(self->original);
    Py_VISIT(self->fallback);
    Py_VISIT(self->dict);
    return 0;
}

static int
create_task_clear(CreateTask *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->dict);
    return 0;
}

static void
create_task_dealloc(CreateTask *self)
{
    PyObject_GC_UnTrack(self);
    create_task_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
create_task_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
create_task_repr(CreateTask *self)
{
    const char *what = Py_TYPE(self) == &RunInExecutorType ? "run_in_executor" : "create_task";
    return PyUnicode_FromFormat("<async_trace %s wrapper of %R>", what, self->original);
}

static PyMemberDef create_task_members[] = {
    {"__async_trace_fallback__", T_OBJECT, offsetof(CreateTask, fallback), READONLY,
     "The Python wrapper, which handles every case but the common one."},
    {NULL},
};

static PyGetSetDef create_task_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

/* The two wrapper types share one layout and everything but their name (and vectorcall, chosen
 * by create_task_new). */
#define WRAPPER_TYPE(NAME, DOC)                                                          \
    {                                                                                    \
        PyVarObject_HEAD_INIT(NULL, 0)                                                   \
        .tp_name = "async_trace._ccore." NAME,                                           \
        .tp_basicsize = sizeof(CreateTask),                                              \
        .tp_dealloc = (destructor)create_task_dealloc,                                   \
        .tp_vectorcall_offset = offsetof(CreateTask, vectorcall),                        \
        .tp_repr = (reprfunc)create_task_repr,                                           \
        .tp_call = PyVectorcall_Call,                                                    \
        .tp_getattro = PyObject_GenericGetAttr,                                          \
        .tp_setattro = PyObject_GenericSetAttr,                                          \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | \
                    Py_TPFLAGS_METHOD_DESCRIPTOR,                                        \
        .tp_doc = DOC,                                                                   \
        .tp_traverse = (traverseproc)create_task_traverse,                               \
        .tp_clear = (inquiry)create_task_clear,                                          \
        .tp_members = create_task_members,                                               \
        .tp_getset = create_task_getset,                                                 \
        .tp_descr_get = create_task_get,                                                 \
        .tp_dictoffset = offsetof(CreateTask, dict),                                     \
        .tp_new = create_task_new,                                                       \
    }

static PyTypeObject CreateTaskType =
    WRAPPER_TYPE("CreateTask", "CreateTask(original, fallback): the create_task wrapper's common case, compiled.");


/* --- the run_in_executor wrapper ------------------------------------------ */

static PyObject *exec_process_pool = NULL;  /* concurrent.futures.ProcessPoolExecutor */
static PyObject *exec_partial = NULL;       /* functools.partial */
static PyObject *exec_context_call = NULL;  /* _contexts.ContextCall (a functools.partial subclass) */
static PyObject *exec_call_watchers = NULL; /* _hooks.call_watchers (a list) */
static PyObject *str_get_debug = NULL, *str_func = NULL, *str_self = NULL, *str_dunder_name = NULL,
                *str_run = NULL;

/* _contexts.context_of_run(func): the Context of functools.partial(ctx.run, ...) as asyncio.to_thread
 * builds it (a new reference), or NULL: none (no error set) or an error (set). */
static PyObject *
context_of_run(PyObject *func)
{
    PyObject *kind = (PyObject *)Py_TYPE(func);
    if (kind != exec_partial && kind != exec_context_call) {
        return NULL;
    }
    PyObject *target = PyObject_GetAttr(func, str_func);
    if (target == NULL) {
        return NULL;
    }
    PyObject *owner = NULL, *name = NULL, *result = NULL;
    if (optional_attr(target, str_self, &owner) < 0 || owner == NULL || !PyContext_CheckExact(owner)) {
        goto done;
    }
    if (optional_attr(target, str_dunder_name, &name) < 0 || name == NULL) {
        goto done;
    }
    int is_run = PyObject_RichCompareBool(name, str_run, Py_EQ);
    if (is_run > 0) {
        result = Py_NewRef(owner);
    }
done:
    Py_DECREF(target);
    Py_XDECREF(owner);
    Py_XDECREF(name);
    return result;
}

/* The node of an executor call made by the running task of loop from the current frame: the common case
 * of _capture.capture(ExecutorNode, loop, frame). Py_None outside it (the Python wrapper decides). */
static PyObject *
executor_node(PyObject *loop)
{
    PyObject *parent = NULL, *task = NULL, *stop = NULL, *frames = NULL, *ref = NULL, *result = NULL;
    long depth;
    int common = running_parent(loop, 0, 0, &parent, &task, &stop, &depth);
    if (common <= 0) {
        return common < 0 ? NULL : Py_NewRef(Py_None);
    }
    Cursor here = {0}; /* the caller of run_in_executor */
#ifdef AT_IFRAMES
    here.iframe = iframe_top();
#else
    here.obj = (PyFrameObject *)Py_XNewRef(PyEval_GetFrame());
#endif
    if (!cursor_live(&here)) {
        goto not_common;
    }
    frames = walk_from(&here, stop, 1);
    if (frames == NULL) {
        goto done;
    }
    ref = PyWeakref_NewRef(task, NULL);
    if (ref == NULL) {
        goto done;
    }
    {
        PyObject *child_depth = PyLong_FromLong(depth + 1);
        if (child_depth == NULL) {
            goto done;
        }
        result = new_node(executor_node_type, parent, child_depth, Py_None, frames, ref);
        Py_DECREF(child_depth);
    }
    goto done;
not_common:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(parent);
    Py_XDECREF(task);
    Py_XDECREF(stop);
    Py_XDECREF(frames);
    Py_XDECREF(ref);
    return result;
}

/* RunInExecutor(original, fallback): _capture's run_in_executor wrapper, for its common case (a traced
 * task's call of a function, to a thread pool or the default executor, outside debug mode; or
 * asyncio.to_thread's call in the context it copied). Every other call goes to ``fallback``. */
static PyObject *
run_in_executor_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CreateTask *self = (CreateTask *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (!wrapper_active || nargs < 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) ||
        current_var == NULL || exec_process_pool == NULL) {
        return call_fallback(self, args, nargsf, kwnames);
    }
    PyObject *loop = args[0], *executor = args[1], *func = args[2];
    PyObject *debug = PyObject_CallMethodNoArgs(loop, str_get_debug);
    int debugging = debug == NULL ? -1 : PyObject_IsTrue(debug);
    Py_XDECREF(debug);
    if (debugging != 0 || !PyCallable_Check(func)) {
        PyErr_Clear();
        return call_fallback(self, args, nargsf, kwnames); /* the loop's checks see what they see untraced */
    }
    PyObject *ctx = context_of_run(func);
    if (ctx == NULL) {
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return call_fallback(self, args, nargsf, kwnames);
        }
        int to_processes = executor == Py_None ? 0 : PyObject_IsInstance(executor, exec_process_pool);
        if (to_processes != 0) {
            PyErr_Clear();
            return call_fallback(self, args, nargsf, kwnames); /* the chain goes symbolized: _process.hop */
        }
    }
    PyObject *node = executor_node(loop);
    if (node == NULL || node == Py_None) {
        PyErr_Clear();
        Py_XDECREF(node);
        Py_XDECREF(ctx);
        return call_fallback(self, args, nargsf, kwnames);
    }
    PyObject *future;
    if (ctx != NULL) {
        /* asyncio.to_thread copied the context before calling us: the node goes into that copy. */
        int failed = set_in(ctx, node);
        Py_DECREF(ctx);
        if (failed) {
            PyErr_Clear();
            Py_DECREF(node);
            return call_fallback(self, args, nargsf, kwnames);
        }
        future = PyObject_Vectorcall(self->original, args, nargsf, NULL);
    }
    else {
        PyObject *call = NULL, *run = NULL, *pair = NULL;
        ctx = PyContext_CopyCurrent();
        if (ctx != NULL && set_in(ctx, node) == 0 && (run = PyObject_GetAttr(ctx, str_run)) != NULL &&
            (pair = PyTuple_Pack(2, run, func)) != NULL) {
            /* ContextCall(ctx, func), made as its __new__ makes it: functools.partial(ctx.run, func). */
            call = ((PyTypeObject *)exec_partial)->tp_new((PyTypeObject *)exec_context_call, pair, NULL);
        }
        Py_XDECREF(ctx);
        Py_XDECREF(run);
        Py_XDECREF(pair);
        if (call == NULL) {
            PyErr_Clear();
            Py_DECREF(node);
            return call_fallback(self, args, nargsf, kwnames);
        }
        PyObject *small[8];
        PyObject **call_args = nargs <= 8 ? small : PyMem_New(PyObject *, nargs);
        if (call_args == NULL) {
            Py_DECREF(call);
            Py_DECREF(node);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t k = 0; k < nargs; k++) {
            call_args[k] = args[k];
        }
        call_args[2] = call;
        future = PyObject_Vectorcall(self->original, call_args, nargs, NULL);
        if (call_args != small) {
            PyMem_Free(call_args);
        }
        Py_DECREF(call);
    }
    if (future != NULL && PyList_GET_SIZE(exec_call_watchers) > 0) {
        PyObject *done = PyObject_CallFunctionObjArgs(notify, exec_call_watchers, future, node, NULL);
        Py_XDECREF(done);
        PyErr_Clear();
    }
    Py_DECREF(node);
    return future; /* NULL: the loop's own error (a shut-down executor), as untraced */
}

static PyObject *
ccore_setup_executor(PyObject *module, PyObject *args)
{
    PyObject *process_pool, *partial, *context_call, *watchers;
    if (!PyArg_ParseTuple(args, "O!O!O!O!:setup_executor", &PyType_Type, &process_pool, &PyType_Type, &partial,
                          &PyType_Type, &context_call, &PyList_Type, &watchers)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)context_call, (PyTypeObject *)partial)) {
        PyErr_SetString(PyExc_TypeError, "setup_executor(): ContextCall must subclass functools.partial");
        return NULL;
    }
    Py_XSETREF(exec_process_pool, Py_NewRef(process_pool));
    Py_XSETREF(exec_partial, Py_NewRef(partial));
    Py_XSETREF(exec_context_call, Py_NewRef(context_call));
    Py_XSETREF(exec_call_watchers, Py_NewRef(watchers));
    Py_RETURN_NONE;
}

static PyTypeObject RunInExecutorType = WRAPPER_TYPE(
    "RunInExecutor", "RunInExecutor(original, fallback): the run_in_executor wrapper's common case, compiled.");

static PyObject *
ccore_set_active(PyObject *module, PyObject *flag)
{
    int value = PyObject_IsTrue(flag);
    if (value < 0) {
        return NULL;
    }
    wrapper_active = value;
    if (!value) {
        clear_siblings();
    }
    Py_RETURN_NONE;
}

static PyObject *
ccore_setup_wrapper(PyObject *module, PyObject *args)
{
    PyObject *trim, *notifier, *watchers, *codes, *noter, *factories, *checker;
    if (!PyArg_ParseTuple(args, "OOO!OOO!O:setup_wrapper", &trim, &notifier, &PyList_Type, &watchers, &codes, &noter,
                          &PyTuple_Type, &factories, &checker)) {
        return NULL;
    }
    if (codes != Py_None && !PyDict_Check(codes)) {
        PyErr_SetString(PyExc_TypeError, "setup_wrapper(): task_codes must be a dict or None");
        return NULL;
    }
    Py_XSETREF(task_codes, Py_NewRef(codes));
    Py_XSETREF(note_task_code, Py_NewRef(noter));
    Py_XSETREF(trim_source_traceback, Py_NewRef(trim));
    Py_XSETREF(notify, Py_NewRef(notifier));
    Py_XSETREF(task_watchers, Py_NewRef(watchers));
    Py_XSETREF(context_factories, Py_NewRef(factories));
    Py_XSETREF(check_coroutine, Py_NewRef(checker));
    Py_RETURN_NONE;
}

/* --- on_unwind ---------------------------------------------------------- */

static PyObject *unwind_slow = NULL;      /* _record_unwind._on_unwind */
static int coro_flags = 0;

/* on_unwind(code, offset, exc): sys.monitoring's PY_UNWIND callback. Returns
 * at once unless the frame left is the running task's coroutine or a frame
 * in an executor hop's thread; then the Python callback decides. Never
 * raises: an exception here would replace the program's in flight. */
static PyObject *
ccore_on_unwind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || current_var == NULL || !PyCode_Check(args[0])) {
        goto slow;
    }
    PyObject *node = NULL;
    if (PyContextVar_Get(current_var, NULL, &node) < 0) {
        PyErr_Clear();
        goto slow;
    }
    int interesting;
    if (((PyCodeObject *)args[0])->co_flags & coro_flags) {
        interesting = node != NULL && node != Py_None && PyTuple_Check(node) && PyTuple_GET_SIZE(node) > 2 &&
                      PyTuple_GET_ITEM(node, 2) == args[0];
    }
    else {
        interesting = node != NULL && (PyObject *)Py_TYPE(node) == executor_node_type;
    }
    Py_XDECREF(node);
    if (!interesting) {
        Py_RETURN_NONE;
    }
slow:
    if (unwind_slow == NULL) {
        Py_RETURN_NONE;
    }
    {
        PyObject *result = PyObject_Vectorcall(unwind_slow, args, nargs, NULL);
        if (result == NULL) {
            PyErr_Clear(); /* the Python callback catches its own; never let one through */
            Py_RETURN_NONE;
        }
        return result;
    }
}

static PyObject *
ccore_setup_unwind(PyObject *module, PyObject *args)
{
    PyObject *slow;
    int flags;
    if (!PyArg_ParseTuple(args, "Oi:setup_unwind", &slow, &flags)) {
        return NULL;
    }
    Py_XSETREF(unwind_slow, Py_NewRef(slow));
    coro_flags = flags;
    Py_RETURN_NONE;
}

/* --- append_chain ------------------------------------------------------- */

static PyObject *col_resolved = NULL;     /* _frames.resolved_cache: {id(frames): (frames, shown)} */
static PyObject *col_in_app_cache = NULL; /* _inapp.in_app_cache: {filename: (bool, ...)} */
static PyObject *col_in_app = NULL;       /* _inapp.in_app */
static PyObject *col_resolve = NULL;      /* _frames.resolve */
static PyObject *col_frame = NULL;        /* _collect._frame */
static PyObject *col_created_by = NULL;   /* _collect.created_by */
static PyObject *col_append_node = NULL;  /* _collect.append_node */
/* {key: None, ..., "is_executor": False, "is_process": False, ...}: copied for each frame dict. */
static PyObject *frame_template = NULL;
/* The frame dict's keys, in _collect._frame's order (the order reprs and JSON show). */
static PyObject *key_name, *key_line, *key_filename, *key_indent, *key_task, *key_is_executor, *key_is_process,
    *key_in_app;

/* The task a node's creator reference names: a new reference, Py_None if gone; NULL on error. */
static PyObject *
creator_of(PyObject *ref)
{
    if (PyWeakref_CheckRef(ref)) {
        PyObject *obj = referent(ref);
        return obj != NULL ? obj : Py_NewRef(Py_None);
    }
    return PyObject_CallNoArgs(ref);
}

/* _collect._frame(name, line, filename, task, is_executor, indent): a new dict. */
static PyObject *
frame_dict(PyObject *name, PyObject *line, PyObject *filename, PyObject *task, PyObject *is_executor, PyObject *indent)
{
    PyObject *app = NULL;
    PyObject *hit = PyDict_GetItemWithError(col_in_app_cache, filename); /* borrowed */
    if (hit != NULL && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) > 0) {
        app = Py_NewRef(PyTuple_GET_ITEM(hit, 0));
    }
    else if (hit != NULL) {
        app = PySequence_GetItem(hit, 0);
    }
    else if (!PyErr_Occurred()) {
        app = PyObject_CallOneArg(col_in_app, filename);
    }
    if (app == NULL) {
        return NULL;
    }
    /* A copy of a template with every key in place: no resize while it is filled in. */
    PyObject *d = PyDict_Copy(frame_template);
    if (d == NULL || PyDict_SetItem(d, key_name, name) < 0 || PyDict_SetItem(d, key_line, line) < 0 ||
        PyDict_SetItem(d, key_filename, filename) < 0 || PyDict_SetItem(d, key_indent, indent) < 0 ||
        PyDict_SetItem(d, key_task, task) < 0 || PyDict_SetItem(d, key_is_executor, is_executor) < 0 ||
        PyDict_SetItem(d, key_in_app, app) < 0) {
        Py_XDECREF(d);
        d = NULL;
    }
    Py_DECREF(app);
    return d;
}

/* Append the frames of one hop as shown (a resolved tuple, borrowed) to frames: the first real one
 * names task and is_executor (borrowed); its index goes to boundaries (if not NULL). _collect's
 * append_frames (pid 0) and append_chain's loop for a task hop. 0, or -1 with an error set. */
static int
append_shown(PyObject *frames, PyObject *boundaries, PyObject *shown, PyObject *task, PyObject *is_executor)
{
    PyObject *seq = PySequence_Fast(shown, "resolved frames must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    int result = -1;
    Py_INCREF(task);
    Py_INCREF(is_executor);
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_ValueError, "a resolved frame must be a (name, line, filename) tuple");
            goto done;
        }
        PyObject *name = PyTuple_GET_ITEM(item, 0), *line = PyTuple_GET_ITEM(item, 1),
                 *filename = PyTuple_GET_ITEM(item, 2);
        PyObject *indent = PyLong_FromSsize_t(PyList_GET_SIZE(frames));
        if (indent == NULL) {
            goto done;
        }
        PyObject *d;
        if (line == Py_None) { /* an elision marker does not take the boundary */
            PyObject *call[6] = {name, Py_None, Py_None, Py_None, Py_False, indent};
            d = PyObject_Vectorcall(col_frame, call, 6, NULL);
        }
        else {
            if (boundaries != NULL && PyList_Append(boundaries, indent) < 0) {
                Py_DECREF(indent);
                goto done;
            }
            boundaries = NULL;
            d = frame_dict(name, line, filename, task, is_executor, indent);
            Py_SETREF(task, Py_NewRef(Py_None));
            Py_SETREF(is_executor, Py_NewRef(Py_False));
        }
        Py_DECREF(indent);
        if (d == NULL || PyList_Append(frames, d) < 0) {
            Py_XDECREF(d);
            goto done;
        }
        Py_DECREF(d);
    }
    result = 0;
done:
    Py_DECREF(task);
    Py_DECREF(is_executor);
    Py_DECREF(seq);
    return result;
}

/* The part of append_chain's loop for one task hop: hop's frames as shown, the first real one
 * naming created (borrowed). 0, or -1 with an error set. */
static int
append_task_hop(PyObject *frames, PyObject *boundaries, PyObject *hop, PyObject *created)
{
    PyObject *shown;
    PyObject *key = PyLong_FromVoidPtr(hop);
    if (key == NULL) {
        return -1;
    }
    PyObject *hit = PyDict_GetItemWithError(col_resolved, key); /* borrowed */
    Py_DECREF(key);
    if (hit != NULL && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 2 && PyTuple_GET_ITEM(hit, 0) == hop) {
        shown = Py_NewRef(PyTuple_GET_ITEM(hit, 1));
    }
    else if (PyErr_Occurred()) {
        return -1;
    }
    else {
        shown = PyObject_CallOneArg(col_resolve, hop);
        if (shown == NULL) {
            return -1;
        }
    }
    int result = append_shown(frames, boundaries, shown, created, Py_False);
    Py_DECREF(shown);
    return result;
}

/* append_frames(out, shown, task, is_executor, pid=0): _collect.append_frames, compiled (a process
 * hop's, pid not 0, goes to the Python one). */
static PyObject *col_py_append_frames = NULL;

static PyObject *
ccore_append_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (col_py_append_frames == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "append_frames(): setup_collect() was not called");
        return NULL;
    }
    if (nargs == 5) {
        int pid = PyObject_IsTrue(args[4]);
        if (pid < 0) {
            return NULL;
        }
        if (pid) {
            return PyObject_Vectorcall(col_py_append_frames, args, nargs, NULL);
        }
    }
    else if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "append_frames() takes 4 or 5 arguments");
        return NULL;
    }
    if (!PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "append_frames(): out must be a list");
        return NULL;
    }
    if (append_shown(args[0], NULL, args[1], args[2], args[3]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- resolve_uncached --------------------------------------------------- */

static PyObject *res_kind_cache = NULL;  /* _frames._kind_cache: {id(code): (code, kind)} */
static PyObject *res_line_cache = NULL;  /* _frames._line_cache: {(id(code), lasti): (code, line)} */
static PyObject *res_frame_kind = NULL;  /* _frames.frame_kind */
static PyObject *res_line_at = NULL;     /* _frames.line_at */
static PyObject *res_marker = NULL;      /* _frames.elision_marker */
static PyObject *res_runner_codes = NULL;/* _frames._RUNNER_CODES: frozenset of ids */
static PyObject *res_task_makers = NULL; /* _frames._TASK_MAKERS: frozenset of ids */
static PyObject *str_co_name = NULL, *str_co_filename = NULL;
enum { KIND_USER = 0, KIND_SKIP = 1, KIND_CUT = 2, KIND_LOOP_CALLER = 3 };

/* frame_kind(code) with its cache hit inlined: 0-3, or -1 with an error set. */
static long
kind_of(PyObject *code, PyObject *key)
{
    PyObject *hit = PyDict_GetItemWithError(res_kind_cache, key); /* borrowed */
    PyObject *kind;
    if (hit != NULL && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 2 && PyTuple_GET_ITEM(hit, 0) == code) {
        kind = Py_NewRef(PyTuple_GET_ITEM(hit, 1));
    }
    else if (PyErr_Occurred()) {
        return -1;
    }
    else if ((kind = PyObject_CallOneArg(res_frame_kind, code)) == NULL) {
        return -1;
    }
    long value = PyLong_AsLong(kind);
    Py_DECREF(kind);
    return value;
}

/* line_at(code, lasti) with its cache hit inlined: a new reference. */
static PyObject *
line_of(PyObject *code, PyObject *id, PyObject *lasti)
{
    PyObject *key = PyTuple_Pack(2, id, lasti);
    if (key == NULL) {
        return NULL;
    }
    PyObject *hit = PyDict_GetItemWithError(res_line_cache, key); /* borrowed */
    Py_DECREF(key);
    if (hit != NULL && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 2 && PyTuple_GET_ITEM(hit, 0) == code) {
        return Py_NewRef(PyTuple_GET_ITEM(hit, 1));
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *call[2] = {code, lasti};
    return PyObject_Vectorcall(res_line_at, call, 2, NULL);
}

/* resolve_uncached(frames): _frames.resolve_uncached, compiled. See it for the rules. */
static PyObject *
ccore_resolve_uncached(PyObject *module, PyObject *frames)
{
    if (res_kind_cache == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "resolve_uncached(): setup_resolve() was not called");
        return NULL;
    }
    if (!PyTuple_Check(frames)) {
        PyErr_SetString(PyExc_TypeError, "resolve_uncached(): frames must be a tuple");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    int taken = 0;
    int callback = -1; /* -1: no frame skipped yet (Python's None) */
    Py_ssize_t n = PyTuple_GET_SIZE(frames) & ~(Py_ssize_t)1;
    for (Py_ssize_t i = 0; i < n; i += 2) {
        PyObject *code = PyTuple_GET_ITEM(frames, i), *lasti = PyTuple_GET_ITEM(frames, i + 1);
        PyObject *item;
        if (code == Py_None) {
            PyObject *marker = PyObject_CallOneArg(res_marker, lasti);
            if (marker == NULL) {
                goto error;
            }
            item = PyTuple_Pack(3, marker, Py_None, Py_None);
            Py_DECREF(marker);
        }
        else {
            PyObject *id = PyLong_FromVoidPtr(code);
            if (id == NULL) {
                goto error;
            }
            long kind = kind_of(code, id);
            if (kind < 0) {
                Py_DECREF(id);
                goto error;
            }
            if (kind != KIND_USER) {
                if (kind == KIND_CUT) {
                    int runner = 0;
                    if (!taken && code != handle_run && callback == 1 &&
                        (runner = PySet_Contains(res_runner_codes, id)) < 0) {
                        Py_DECREF(id);
                        goto error;
                    }
                    if (taken || code == handle_run || runner) {
                        Py_DECREF(id);
                        break;
                    }
                }
                if (kind != KIND_LOOP_CALLER) {
                    if (kind == KIND_CUT) {
                        callback = 0;
                    }
                    else if (kind == KIND_SKIP && callback != 0) {
                        int maker = PySet_Contains(res_task_makers, id);
                        if (maker < 0) {
                            Py_DECREF(id);
                            goto error;
                        }
                        callback = !maker;
                    }
                    else {
                        callback = 0;
                    }
                    Py_DECREF(id);
                    continue;
                }
                if (taken) {
                    Py_DECREF(id);
                    break;
                }
            }
            PyObject *line = line_of(code, id, lasti);
            Py_DECREF(id);
            if (line == NULL) {
                goto error;
            }
            PyObject *name = PyObject_GetAttr(code, str_co_name);
            PyObject *filename = name != NULL ? PyObject_GetAttr(code, str_co_filename) : NULL;
            item = filename != NULL ? PyTuple_Pack(3, name, line, filename) : NULL;
            Py_XDECREF(name);
            Py_XDECREF(filename);
            Py_DECREF(line);
            taken = 1;
        }
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    PyObject *result = PyList_AsTuple(out);
    Py_DECREF(out);
    return result;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *
ccore_setup_resolve(PyObject *module, PyObject *args)
{
    PyObject *kind_cache, *line_cache, *frame_kind, *line_at, *marker, *runner_codes, *task_makers;
    if (!PyArg_ParseTuple(args, "O!O!OOOO!O!:setup_resolve", &PyDict_Type, &kind_cache, &PyDict_Type, &line_cache,
                          &frame_kind, &line_at, &marker, &PyFrozenSet_Type, &runner_codes, &PyFrozenSet_Type,
                          &task_makers)) {
        return NULL;
    }
    if (handle_run == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup_resolve(): setup_walk() first");
        return NULL;
    }
    Py_XSETREF(res_kind_cache, Py_NewRef(kind_cache));
    Py_XSETREF(res_line_cache, Py_NewRef(line_cache));
    Py_XSETREF(res_frame_kind, Py_NewRef(frame_kind));
    Py_XSETREF(res_line_at, Py_NewRef(line_at));
    Py_XSETREF(res_marker, Py_NewRef(marker));
    Py_XSETREF(res_runner_codes, Py_NewRef(runner_codes));
    Py_XSETREF(res_task_makers, Py_NewRef(task_makers));
    Py_RETURN_NONE;
}

/* append_chain(frames, node, created, known, last_seen, loop): _collect.append_chain, compiled.
 * Task hops here; every other kind of node through _collect.append_node. */
static PyObject *
ccore_append_chain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "append_chain() takes 6 arguments");
        return NULL;
    }
    if (col_append_node == NULL || current_var == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "append_chain(): setup_collect() was not called");
        return NULL;
    }
    PyObject *frames = args[0], *loop = args[5];
    if (!PyList_Check(frames)) {
        PyErr_SetString(PyExc_TypeError, "append_chain(): frames must be a list");
        return NULL;
    }
    int known = PyObject_IsTrue(args[3]);
    if (known < 0) {
        return NULL;
    }
    PyObject *result = NULL, *index = NULL;
    PyObject *node = Py_NewRef(args[1]), *created = Py_NewRef(args[2]), *last_seen = Py_NewRef(args[4]);
    Py_ssize_t root = -1;
    PyObject *boundaries = PyList_New(0);
    if (boundaries == NULL) {
        goto done;
    }
    while (node != Py_None) {
        if (!PyTuple_Check(node) || PyTuple_GET_SIZE(node) < 5) {
            PyErr_SetString(PyExc_TypeError, "append_chain(): not a chain node");
            goto done;
        }
        PyObject *kind = (PyObject *)Py_TYPE(node);
        if (!known && (kind == task_node_type || kind == root_node_type)) {
            if (index == NULL && (index = PyList_New(0)) == NULL) {
                goto done;
            }
            PyObject *call[4] = {node, last_seen, loop, index};
            PyObject *found = PyObject_Vectorcall(col_created_by, call, 4, NULL);
            if (found == NULL) {
                goto done;
            }
            Py_SETREF(created, found);
        }
        if (kind == task_node_type) {
            if (append_task_hop(frames, boundaries, PyTuple_GET_ITEM(node, 3), created) < 0) {
                goto done;
            }
        }
        else {
            PyObject *call[3] = {frames, node, created};
            PyObject *was_root = PyObject_Vectorcall(col_append_node, call, 3, NULL);
            if (was_root == NULL) {
                goto done;
            }
            int is_root = PyObject_IsTrue(was_root);
            Py_DECREF(was_root);
            if (is_root < 0) {
                goto done;
            }
            if (is_root) {
                root = PyList_GET_SIZE(frames) - 1;
            }
        }
        PyObject *ref = PyTuple_GET_ITEM(node, 4);
        known = ref != Py_None;
        if (known) {
            PyObject *task = creator_of(ref);
            if (task == NULL) {
                goto done;
            }
            Py_SETREF(created, task);
            if (task != Py_None) {
                Py_SETREF(last_seen, Py_NewRef(task));
            }
        }
        else {
            Py_SETREF(created, Py_NewRef(Py_None));
        }
        Py_SETREF(node, Py_NewRef(PyTuple_GET_ITEM(node, 0)));
    }
    result = Py_BuildValue("(On)", boundaries, root);
done:
    Py_XDECREF(boundaries);
    Py_XDECREF(index);
    Py_DECREF(node);
    Py_DECREF(created);
    Py_DECREF(last_seen);
    return result;
}

static PyObject *
ccore_setup_collect(PyObject *module, PyObject *args)
{
    PyObject *resolved, *in_app_cache, *in_app, *resolve, *frame, *created_by, *append_node, *append_frames;
    if (!PyArg_ParseTuple(args, "O!O!OOOOOO:setup_collect", &PyDict_Type, &resolved, &PyDict_Type, &in_app_cache,
                          &in_app, &resolve, &frame, &created_by, &append_node, &append_frames)) {
        return NULL;
    }
    Py_XSETREF(col_resolved, Py_NewRef(resolved));
    Py_XSETREF(col_in_app_cache, Py_NewRef(in_app_cache));
    Py_XSETREF(col_in_app, Py_NewRef(in_app));
    Py_XSETREF(col_resolve, Py_NewRef(resolve));
    Py_XSETREF(col_frame, Py_NewRef(frame));
    Py_XSETREF(col_created_by, Py_NewRef(created_by));
    Py_XSETREF(col_append_node, Py_NewRef(append_node));
    Py_XSETREF(col_py_append_frames, Py_NewRef(append_frames));
    Py_RETURN_NONE;
}

/* --- the registration hook (3.10-3.13) ------------------------------------ */

static PyObject *reg_traced_modules = NULL; /* _direct_tasks._TRACED_MODULES */
static PyObject *reg_traced_callers = NULL; /* _direct_tasks._traced_callers: a set of ids */
static PyObject *reg_trace = NULL;          /* _direct_tasks._trace_safely */
static int reg_active = 0;
static PyObject *str_pending_removals = NULL, *str_commit_removals = NULL, *str_data = NULL, *str_remove = NULL,
                *str_add = NULL;

/* _direct_tasks._trace_built's common cases (3.12+, where a task hands out its context), for a task
 * built directly by the code running now (the caller of Task(), not asyncio's): its context holds
 * the node made for it already (a task factory's task, under our create_task wrapper), or the
 * creator's, inherited (aiohttp's tasks): then the node is made as task_node does and set there.
 * 1 done; 0 (error cleared or not) for the Python code to decide. */
static int
trace_built_fast(PyObject *task, PyObject *module_name)
{
    int handled = 0;
    PyObject *ctx = NULL, *coro = NULL, *code = NULL, *node = NULL, *loop = NULL, *creator = NULL;
    if (PySet_Contains(asyncio_callers, module_name) != 0) {
        goto done; /* built by asyncio's own code: the Python code's frame rules */
    }
    ctx = PyObject_CallMethodNoArgs(task, str_get_context);
    if (ctx == NULL || !PyContext_CheckExact(ctx)) {
        goto done;
    }
    coro = PyObject_CallMethodNoArgs(task, str_get_coro);
    if (coro == NULL || !PyCoro_CheckExact(coro)) {
        goto done;
    }
    code = PyObject_GetAttr(coro, str_cr_code);
    node = code != NULL ? PyObject_CallMethodOneArg(ctx, str_get, current_var) : NULL;
    loop = node != NULL ? PyObject_CallMethodNoArgs(task, str_get_loop) : NULL;
    if (loop == NULL) {
        goto done;
    }
    if (node != Py_None) {
        creator = PyObject_CallOneArg(current_task, loop);
        if (creator == NULL || !PyTuple_Check(node) || PyTuple_GET_SIZE(node) < 5) {
            goto done;
        }
        PyObject *kind = (PyObject *)Py_TYPE(node), *ref = PyTuple_GET_ITEM(node, 4);
        if (kind == task_node_type && ref == Py_None && creator == Py_None) {
            goto done; /* made where no task runs, by a wrapper holding it in flight or not: Python's */
        }
        if (kind == task_node_type && ref != Py_None) {
            PyObject *made_by = PyWeakref_CheckRef(ref) ? referent(ref) : NULL;
            int ours = made_by != NULL && made_by == creator;
            Py_XDECREF(made_by);
            if (ours) {
                handled = PyTuple_GET_ITEM(node, 2) == code; /* else renamed by the Python code */
                goto done;
            }
        }
        if (kind == root_node_type && creator == Py_None && PyTuple_GET_ITEM(node, 2) == code) {
            handled = 1;
            goto done;
        }
    }
    /* capture(TaskNode, loop, frame, code): task_node's common case, from the caller of Task(). */
    PyObject *made = task_node_impl(loop, coro, Py_None, 0, NULL);
    if (made == NULL || made == Py_None) {
        Py_XDECREF(made);
        goto done;
    }
    if (set_in(ctx, made) == 0) {
        handled = 1;
        if (PyList_GET_SIZE(task_watchers) > 0) {
            PyObject *r = PyObject_CallFunctionObjArgs(notify, task_watchers, task, NULL);
            Py_XDECREF(r);
        }
    }
    Py_DECREF(made);
done:
    PyErr_Clear();
    Py_XDECREF(ctx);
    Py_XDECREF(coro);
    Py_XDECREF(code);
    Py_XDECREF(node);
    Py_XDECREF(loop);
    Py_XDECREF(creator);
    return handled;
}

/* _direct_tasks._Registry.add, compiled: weakref.WeakSet.add, then a task built other than by a
 * create_task wrapper is traced from the frame that built it. Errors of the set's own part are
 * the set's (as WeakSet.add raises them); a failure of ours is dropped: the task stays untraced. */
static PyObject *
registry_add(PyObject *self, PyObject *item)
{
    PyObject *pending = PyObject_GetAttr(self, str_pending_removals);
    if (pending == NULL) {
        return NULL;
    }
    int truth = PyObject_IsTrue(pending);
    Py_DECREF(pending);
    if (truth < 0) {
        return NULL;
    }
    if (truth) {
        PyObject *done = PyObject_CallMethodNoArgs(self, str_commit_removals);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    PyObject *data = PyObject_GetAttr(self, str_data);
    if (data == NULL) {
        return NULL;
    }
    PyObject *remove = PyObject_GetAttr(self, str_remove);
    PyObject *ref = remove != NULL ? PyWeakref_NewRef(item, remove) : NULL;
    Py_XDECREF(remove);
    int added = -1;
    if (ref != NULL) {
        if (PySet_CheckExact(data)) {
            added = PySet_Add(data, ref);
        }
        else {
            PyObject *r = PyObject_CallMethodOneArg(data, str_add, ref);
            added = r != NULL ? 0 : -1;
            Py_XDECREF(r);
        }
        Py_DECREF(ref);
    }
    Py_DECREF(data);
    if (added < 0) {
        return NULL;
    }
    if (!reg_active || reg_trace == NULL) {
        Py_RETURN_NONE;
    }
    if (creating_coro != NULL) {
        /* Made by the compiled create_task wrapper, now: traced already. */
        PyObject *made = PyObject_CallMethodNoArgs(item, str_get_coro);
        Py_XDECREF(made);
        if (made == creating_coro) {
            Py_RETURN_NONE;
        }
        PyErr_Clear();
    }
    PyObject *name = NULL; /* 3.12+: the module of the frame that built the task */
    if (frame_module != NULL && frame_module != Py_None) {
        /* Known without materialising the frame: asyncio's create_task, our wrappers. */
#if defined(AT_IFRAMES) && PY_VERSION_HEX >= 0x030C0000
        _PyInterpreterFrame *top = iframe_top();
        name = Py_XNewRef(top == NULL ? Py_None : iframe_module(top));
        if (name == NULL) {
            name = Py_NewRef(Py_None);
        }
#else
        name = call_with_depth(frame_module, 0);
#endif
        int traced = name == NULL ? -1 : PySet_Contains(reg_traced_modules, name);
        if (traced != 0) {
            Py_XDECREF(name);
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }
    /* A wrapper whose frame has another module (one of uvloop's, by functools.wraps), by its code. */
    Cursor here = {0};
#ifdef AT_IFRAMES
    here.iframe = iframe_top();
#else
    here.obj = (PyFrameObject *)Py_XNewRef(PyEval_GetFrame());
#endif
    int skip = -1;
    if (cursor_live(&here)) {
        PyCodeObject *code = cursor_code(&here);
        PyObject *id = PyLong_FromVoidPtr(code);
        Py_DECREF(code);
        skip = id != NULL ? PySet_Contains(reg_traced_callers, id) : -1;
        Py_XDECREF(id);
    }
    if (skip == 0 && !(name != NULL && asyncio_callers != NULL && trace_built_fast(item, name) > 0)) {
        /* The Python code takes the builder's frame (object): made here, for it only. */
        PyObject *frame = here.obj != NULL ? Py_NewRef(here.obj) : (PyObject *)PyEval_GetFrame();
        if (here.obj == NULL) {
            Py_XINCREF(frame);
        }
        PyObject *call[2] = {item, frame == NULL ? Py_None : frame};
        PyObject *r = PyObject_Vectorcall(reg_trace, call, 2, NULL);
        Py_XDECREF(r);
        Py_XDECREF(frame);
    }
    cursor_clear(&here);
    Py_XDECREF(name);
    PyErr_Clear();
    Py_RETURN_NONE;
}

static PyMethodDef registry_add_def = {"add", registry_add, METH_O,
                                       "WeakSet.add; also traces a task built directly (async_trace._direct_tasks)."};

/* registry_method(cls): registry_add as a method of cls (a weakref.WeakSet subclass). */
static PyObject *
ccore_registry_method(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "registry_method(): a class is needed");
        return NULL;
    }
    return PyDescr_NewMethod((PyTypeObject *)cls, &registry_add_def);
}

static PyObject *
ccore_setup_registry(PyObject *module, PyObject *args)
{
    PyObject *traced_modules, *traced_callers, *trace;
    if (!PyArg_ParseTuple(args, "O!O!O:setup_registry", &PyFrozenSet_Type, &traced_modules, &PySet_Type,
                          &traced_callers, &trace)) {
        return NULL;
    }
    Py_XSETREF(reg_traced_modules, Py_NewRef(traced_modules));
    Py_XSETREF(reg_traced_callers, Py_NewRef(traced_callers));
    Py_XSETREF(reg_trace, Py_NewRef(trace));
    Py_RETURN_NONE;
}

static PyObject *
ccore_set_registry_active(PyObject *module, PyObject *flag)
{
    int value = PyObject_IsTrue(flag);
    if (value < 0) {
        return NULL;
    }
    reg_active = value;
    Py_RETURN_NONE;
}

/* --- the module --------------------------------------------------------- */

static PyObject *
ccore_usable(PyObject *module, PyObject *unused)
{
    /* The state above is process-wide: only the main interpreter may use it. */
    return PyBool_FromLong(PyInterpreterState_Get() == PyInterpreterState_Main());
}

static PyObject *
ccore_in_flight(PyObject *module, PyObject *unused)
{
    return Py_NewRef(creating_node == NULL ? Py_None : creating_node);
}

static PyMethodDef ccore_methods[] = {
    {"walk", (PyCFunction)(void (*)(void))ccore_walk, METH_FASTCALL | METH_KEYWORDS,
     "walk(frame, stop, *, remember=True): async_trace._stack.walk, compiled."},
    {"forget", ccore_forget, METH_NOARGS, "Drop walk()'s latest capture."},
    {"usable", ccore_usable, METH_NOARGS, "Whether this interpreter may use the core (the main one only)."},
    {"last", ccore_last, METH_NOARGS, "walk()'s latest capture (for tests)."},
    {"in_flight", ccore_in_flight, METH_NOARGS,
     "The node this thread's compiled create_task wrapper holds in the caller's context for a call, or None."},
    {"setup_walk", ccore_setup_walk, METH_VARARGS, "setup_walk(handle_run_code, settings)"},
    {"task_node", (PyCFunction)(void (*)(void))ccore_task_node, METH_FASTCALL,
     "task_node(loop, coro, shared): the create_task wrapper's common case, compiled; None outside it."},
    {"setup_tasks", ccore_setup_tasks, METH_VARARGS,
     "setup_tasks(current_task, frame_module, getframe, asyncio_callers, "
     "asyncio_creators, protocol_cache, name_root, protocol_method, connection_parent, protocol_frames, "
     "repaired_node)"},
    {"setup_first_step", ccore_setup_first_step, METH_VARARGS,
     "setup_first_step(in_flight, eager_tasks, base_event_loop): _lineage.in_first_step's compiled case (3.12+)."},
    {"set_active", ccore_set_active, METH_O, "set_active(flag): switch the compiled create_task wrappers."},
    {"setup_nodes", ccore_setup_nodes, METH_VARARGS, "setup_nodes(CURRENT, TaskNode, RootNode, ExecutorNode)"},
    {"setup_wrapper", ccore_setup_wrapper, METH_VARARGS,
     "setup_wrapper(trim_source_traceback, notify, task_watchers, task_codes, note_task_code, context_factories, "
     "check_coroutine)"},
    {"on_unwind", (PyCFunction)(void (*)(void))ccore_on_unwind, METH_FASTCALL,
     "on_unwind(code, offset, exc): the PY_UNWIND callback's early returns, compiled."},
    {"append_chain", (PyCFunction)(void (*)(void))ccore_append_chain, METH_FASTCALL,
     "append_chain(frames, node, created, known, last_seen, loop): async_trace._collect.append_chain, compiled."},
    {"setup_collect", ccore_setup_collect, METH_VARARGS,
     "setup_collect(resolved_cache, in_app_cache, in_app, resolve, frame, created_by, append_node, append_frames)"},
    {"append_frames", (PyCFunction)(void (*)(void))ccore_append_frames, METH_FASTCALL,
     "append_frames(out, shown, task, is_executor, pid=0): async_trace._collect.append_frames, compiled."},
    {"resolve_uncached", ccore_resolve_uncached, METH_O, "resolve_uncached(frames): async_trace._frames.resolve_uncached, compiled."},
    {"setup_resolve", ccore_setup_resolve, METH_VARARGS,
     "setup_resolve(kind_cache, line_cache, frame_kind, line_at, elision_marker, runner_codes, task_makers)"},
    {"setup_executor", ccore_setup_executor, METH_VARARGS,
     "setup_executor(ProcessPoolExecutor, functools.partial, ContextCall, call_watchers)"},
    {"registry_method", ccore_registry_method, METH_O,
     "registry_method(cls): async_trace._direct_tasks._Registry.add, compiled, as a method of cls."},
    {"setup_registry", ccore_setup_registry, METH_VARARGS,
     "setup_registry(traced_modules, traced_callers, trace_safely)"},
    {"set_registry_active", ccore_set_registry_active, METH_O, "set_registry_active(flag): switch registry_method's tracing."},
    {"setup_unwind", ccore_setup_unwind, METH_VARARGS, "setup_unwind(on_unwind, coro_flags)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ccore_module = {
    PyModuleDef_HEAD_INIT,
    "async_trace._ccore",
    "The optional compiled core of async_trace (see async_trace._speedups).",
    -1,
    ccore_methods,
};

PyMODINIT_FUNC
PyInit__ccore(void)
{
    last = PyTuple_New(0);
    str_max_frames = PyUnicode_InternFromString("max_frames");
    str_max_depth = PyUnicode_InternFromString("max_depth");
    str_get_coro = PyUnicode_InternFromString("get_coro");
    str_cr_code = PyUnicode_InternFromString("cr_code");
    str_cr_frame = PyUnicode_InternFromString("cr_frame");
    if (last == NULL || str_max_frames == NULL || str_max_depth == NULL || str_get_coro == NULL ||
        str_cr_code == NULL || str_cr_frame == NULL) {
        return NULL;
    }
    str_task_factory = PyUnicode_InternFromString("_task_factory");
    str_get_task_factory = PyUnicode_InternFromString("get_task_factory");
    str_source_traceback = PyUnicode_InternFromString("_source_traceback");
    str_name = PyUnicode_InternFromString("name");
    str_eager_start = PyUnicode_InternFromString("eager_start");
    str_context = PyUnicode_InternFromString("context");
    if (str_context == NULL || str_name == NULL) {
        return NULL;
    }
    kw_context = PyTuple_Pack(1, str_context);
    kw_name_context = PyTuple_Pack(2, str_name, str_context);
    drop_siblings_callback = PyCFunction_New(&drop_siblings_def, NULL);
    if (str_task_factory == NULL || str_get_task_factory == NULL || str_source_traceback == NULL ||
        str_name == NULL || str_eager_start == NULL || kw_context == NULL || kw_name_context == NULL || drop_siblings_callback == NULL) {
        return NULL;
    }
    str_done = PyUnicode_InternFromString("done");
    str_get_context = PyUnicode_InternFromString("get_context");
    str_get = PyUnicode_InternFromString("get");
    str_get_loop = PyUnicode_InternFromString("get_loop");
    if (str_get_context == NULL || str_get == NULL || str_get_loop == NULL) {
        return NULL;
    }
    str_get_debug = PyUnicode_InternFromString("get_debug");
    str_func = PyUnicode_InternFromString("func");
    str_self = PyUnicode_InternFromString("__self__");
    str_dunder_name = PyUnicode_InternFromString("__name__");
    str_run = PyUnicode_InternFromString("run");
    if (str_done == NULL || str_get_debug == NULL || str_func == NULL || str_self == NULL || str_dunder_name == NULL || str_run == NULL) {
        return NULL;
    }
    str_pending_removals = PyUnicode_InternFromString("_pending_removals");
    str_commit_removals = PyUnicode_InternFromString("_commit_removals");
    str_data = PyUnicode_InternFromString("data");
    str_remove = PyUnicode_InternFromString("_remove");
    str_add = PyUnicode_InternFromString("add");
    if (str_pending_removals == NULL || str_commit_removals == NULL || str_data == NULL || str_remove == NULL ||
        str_add == NULL) {
        return NULL;
    }
    str_co_name = PyUnicode_InternFromString("co_name");
    str_co_filename = PyUnicode_InternFromString("co_filename");
    if (str_co_name == NULL || str_co_filename == NULL) {
        return NULL;
    }
    key_name = PyUnicode_InternFromString("name");
    key_line = PyUnicode_InternFromString("line");
    key_filename = PyUnicode_InternFromString("filename");
    key_indent = PyUnicode_InternFromString("indent");
    key_task = PyUnicode_InternFromString("task");
    key_is_executor = PyUnicode_InternFromString("is_executor");
    key_is_process = PyUnicode_InternFromString("is_process");
    key_in_app = PyUnicode_InternFromString("in_app");
    if (key_name == NULL || key_line == NULL || key_filename == NULL || key_indent == NULL || key_task == NULL ||
        key_is_executor == NULL || key_is_process == NULL || key_in_app == NULL) {
        return NULL;
    }
    frame_template = PyDict_New();
    if (frame_template == NULL || PyDict_SetItem(frame_template, key_name, Py_None) < 0 ||
        PyDict_SetItem(frame_template, key_line, Py_None) < 0 || PyDict_SetItem(frame_template, key_filename, Py_None) < 0 ||
        PyDict_SetItem(frame_template, key_indent, Py_None) < 0 || PyDict_SetItem(frame_template, key_task, Py_None) < 0 ||
        PyDict_SetItem(frame_template, key_is_executor, Py_False) < 0 ||
        PyDict_SetItem(frame_template, key_is_process, Py_False) < 0 ||
        PyDict_SetItem(frame_template, key_in_app, Py_None) < 0) {
        return NULL;
    }
    if (PyType_Ready(&CreateTaskType) < 0 || PyType_Ready(&RunInExecutorType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&ccore_module);
    if (module != NULL && (PyModule_AddObjectRef(module, "CreateTask", (PyObject *)&CreateTaskType) < 0 ||
                           PyModule_AddObjectRef(module, "RunInExecutor", (PyObject *)&RunInExecutorType) < 0)) {
        Py_DECREF(module);
        return NULL;
    }
    /* Checked by async_trace._speedups: a core built from another version of _ccore.c (a stale
     * in-place build) is not used. Bump it with every change of a function's signature or meaning. */
    if (module != NULL && PyModule_AddIntConstant(module, "API_VERSION", 16) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#ifdef AT_IFRAMES
    PyObject *iframes = Py_True;
#else
    PyObject *iframes = Py_False;
#endif
    /* Whether the creating stack is read from interpreter frames (no frame objects made). */
    if (module != NULL && PyModule_AddObjectRef(module, "INTERPRETER_FRAMES", iframes) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
