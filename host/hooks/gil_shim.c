/* See gil_shim.h. The only file of gilscope that reads CPython internals. */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include <Python.h>
#include <stddef.h>

#include "internal/pycore_frame.h"
#include "internal/pycore_gil.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "hooks/gil_shim.h"

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#error "gilscope supports CPython 3.11, 3.12 and 3.13"
#endif

/* The hooks read `locked` as a plain int: true of _Py_atomic_int (3.11, 3.12,
 * whose only member is the int) and of the int of 3.13. */
_Static_assert(sizeof(((struct _gil_runtime_state*)0)->locked) == sizeof(int),
               "gil->locked is expected to be int-sized");
_Static_assert(sizeof(((struct _gil_runtime_state*)0)->last_holder) == sizeof(void*),
               "gil->last_holder is expected to be pointer-sized");

static struct _gil_runtime_state* gil_of(PyInterpreterState* interp) {
#if PY_VERSION_HEX < 0x030C0000
  (void)interp;
  return &_PyRuntime.ceval.gil;
#else
  if (interp == NULL) interp = PyInterpreterState_Get();
  return interp->ceval.gil;
#endif
}

int gilscope_gil_addresses_of(void* interp, gilscope_gil_addresses* out) {
  struct _gil_runtime_state* gil = gil_of((PyInterpreterState*)interp);
  if (gil == NULL) return -1;
  out->gil = gil;
  out->mutex = &gil->mutex;
  out->cond = &gil->cond;
#ifdef FORCE_SWITCHING
  out->switch_mutex = &gil->switch_mutex;
  out->switch_cond = &gil->switch_cond;
#else
#error "CPython's GIL is expected to use FORCE_SWITCHING on POSIX"
#endif
  out->locked = (const int*)&gil->locked;
  out->switch_number = &gil->switch_number;
  out->last_holder = (void* const*)&gil->last_holder;
  return 0;
}

uintptr_t gilscope_current_tstate(void) {
#if PY_VERSION_HEX < 0x030D0000
  return (uintptr_t)_PyThreadState_UncheckedGet();
#else
  return (uintptr_t)PyThreadState_GetUnchecked();
#endif
}

int gilscope_interp_shares_main_gil(void* interp) {
#if PY_VERSION_HEX < 0x030C0000
  (void)interp;
  return 1;
#else
  PyInterpreterState* i = interp ? (PyInterpreterState*)interp : PyInterpreterState_Get();
  return i->ceval.gil == PyInterpreterState_Main()->ceval.gil;
#endif
}

/* ---- frames at GIL release (attribution) ---- */

#define GILSCOPE_CODE_SLOTS 16384 /* a power of two */

/* Code objects seen by the probe, each holding one strong reference taken by
 * a thread of the interpreter that owns it (its GIL held), tagged with that
 * interpreter so that each interpreter drops only its own references, at
 * its end (a subinterpreter's objects must not outlive it). The same object
 * seen from two interpreters (the static, immortal code of deep-frozen
 * modules) gets one entry per interpreter. Open addressing; a slot is
 * claimed by CAS on g_codes, then g_interps is published; a drain clears
 * only its interpreter's slots, which may leave a duplicate entry behind a
 * cleared one: harmless, each holds its own reference. */
static PyObject* g_codes[GILSCOPE_CODE_SLOTS];
static PyInterpreterState* g_interps[GILSCOPE_CODE_SLOTS];

static int keep_code(PyObject* code, PyInterpreterState* interp) {
  uintptr_t h = (((uintptr_t)code ^ (uintptr_t)interp) * 0x9E3779B97F4A7C15ull) >> 50; /* 14 bits */
  for (unsigned i = 0; i < GILSCOPE_CODE_SLOTS; ++i) {
    const unsigned s = (h + i) & (GILSCOPE_CODE_SLOTS - 1);
    PyObject* seen = __atomic_load_n(&g_codes[s], __ATOMIC_ACQUIRE);
    if (seen == code && __atomic_load_n(&g_interps[s], __ATOMIC_ACQUIRE) == interp) return 0;
    if (seen == NULL) {
      PyObject* expected = NULL;
      if (__atomic_compare_exchange_n(&g_codes[s], &expected, code, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        Py_INCREF(code);
        __atomic_store_n(&g_interps[s], interp, __ATOMIC_RELEASE);
        return 0;
      }
    }
  }
  return -1;
}

/* The high 16 bits of a code id: the interpreter's id, so that code objects
 * of two interpreters of one process at the same address (one freed, the
 * other allocated there) never share an id. User-space addresses fit in the
 * low 48 bits on Linux x86-64 and arm64. */
static uint64_t code_id_of(PyObject* code, PyInterpreterState* interp) {
  return (uint64_t)(uintptr_t)code | ((uint64_t)(PyInterpreterState_GetID(interp) & 0xFFFF) << 48);
}

static _PyInterpreterFrame* current_frame(PyThreadState* tstate) {
#if PY_VERSION_HEX < 0x030D0000
  return tstate->cframe != NULL ? tstate->cframe->current_frame : NULL;
#else
  return tstate->current_frame;
#endif
}

static PyObject* frame_code(_PyInterpreterFrame* f) {
#if PY_VERSION_HEX < 0x030D0000
  return (PyObject*)f->f_code;
#else
  return f->f_executable;
#endif
}

/* The instruction the frame is executing (or about to execute): fixed for a
 * given code object and offset, so comparing it with the code object is
 * comparing (code, lasti) without the subtraction and division. */
static const void* frame_instr(_PyInterpreterFrame* f) {
#if PY_VERSION_HEX < 0x030D0000
  return f->prev_instr;
#else
  return f->instr_ptr;
#endif
}

/* One entry per thread: a release at the same instruction as the last one
 * (a loop making the same blocking call, a worker forced off in its hot
 * loop) costs a few compares, no line-table lookup, and is reported as the
 * same frame (1) so the hooks can leave its kFrame out. The entry names a
 * code object the registry keeps alive (keep_code succeeded before it was
 * stored), so its address cannot be reused by another code object while it
 * is cached. */
static __thread PyObject* t_last_code;
static __thread const void* t_last_instr;
static __thread PyInterpreterState* t_last_interp;
static __thread uint32_t t_last_line;
static __thread uint64_t t_last_id;

/* hot: next to the hooks that call it, in .text.hot (hooks/hot_state.h). The
 * executable links this library before the hooks, so the probe opens that
 * group: aligned to a page, the whole group (under 3 KiB) shares one. */
__attribute__((hot, aligned(4096))) int gilscope_probe_frame(const void* tstate_ptr, uint64_t* code_id, uint32_t* line) {
  PyThreadState* tstate = (PyThreadState*)tstate_ptr;
  if (tstate == NULL) return -1;
  _PyInterpreterFrame* f = current_frame(tstate);
  while (f != NULL && _PyFrame_IsIncomplete(f)) f = f->previous;
  if (f == NULL) return -1;
  PyObject* code = frame_code(f);
  const void* instr = frame_instr(f);
  if (code == t_last_code && instr == t_last_instr && tstate->interp == t_last_interp) {
    *code_id = t_last_id;
    *line = t_last_line;
    return 1;
  }
  if (code == NULL || !PyCode_Check(code)) return -1;
  const int lasti = _PyInterpreterFrame_LASTI(f);
  const int l = PyCode_Addr2Line((PyCodeObject*)code, lasti * (int)sizeof(_Py_CODEUNIT));
  if (keep_code(code, tstate->interp) != 0) return -1;
  t_last_code = code;
  t_last_instr = instr;
  t_last_interp = tstate->interp;
  t_last_line = l > 0 ? (uint32_t)l : 0;
  t_last_id = code_id_of(code, tstate->interp);
  *code_id = t_last_id;
  *line = t_last_line;
  return 0;
}

void gilscope_code_registry_drain(gilscope_code_fn fn, void* ctx) {
  PyInterpreterState* interp = PyInterpreterState_Get();
  for (unsigned i = 0; i < GILSCOPE_CODE_SLOTS; ++i) {
    PyObject* code = __atomic_load_n(&g_codes[i], __ATOMIC_ACQUIRE);
    if (code == NULL || __atomic_load_n(&g_interps[i], __ATOMIC_ACQUIRE) != interp) continue;
    __atomic_store_n(&g_interps[i], NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&g_codes[i], NULL, __ATOMIC_RELEASE);
    PyCodeObject* co = (PyCodeObject*)code;
    const char* qualname = co->co_qualname ? PyUnicode_AsUTF8(co->co_qualname) : NULL;
    if (qualname == NULL) PyErr_Clear();
    const char* filename = co->co_filename ? PyUnicode_AsUTF8(co->co_filename) : NULL;
    if (filename == NULL) PyErr_Clear();
    fn(code_id_of(code, interp), qualname ? qualname : "?", filename ? filename : "?", co->co_firstlineno, ctx);
    Py_DECREF(code);
  }
  /* This thread's cache may name a code object just released. */
  t_last_code = NULL;
  t_last_instr = NULL;
}
