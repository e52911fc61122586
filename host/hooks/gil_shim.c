/* See gil_shim.h. The only file of gilscope that reads CPython internals. */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include <Python.h>
#include <stddef.h>

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
