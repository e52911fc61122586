/* The per-version window into CPython's GIL: where its mutex and condition
 * variables live, and CPython's own switch counter.
 *
 * Implemented in C (gil_shim.c), compiled with Py_BUILD_CORE against the
 * chosen CPython's internal headers, because struct _gil_runtime_state and
 * its location differ between versions:
 *   3.11:  one GIL for the runtime, _PyRuntime.ceval.gil
 *   3.12+: interp->ceval.gil, one per own-GIL interpreter
 * PRECONDITION for every function: the caller holds the GIL of `interp`. */
#ifndef GILSCOPE_HOOKS_GIL_SHIM_H_
#define GILSCOPE_HOOKS_GIL_SHIM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gilscope_gil_addresses {
  const void* gil;               /* struct _gil_runtime_state* */
  const void* mutex;             /* gil->mutex (pthread_mutex_t) */
  const void* cond;              /* gil->cond */
  const void* switch_mutex;      /* gil->switch_mutex */
  const void* switch_cond;       /* gil->switch_cond */
  const int* locked;             /* gil->locked (an int in every version) */
  const unsigned long* switch_number;
  void* const* last_holder;      /* PyThreadState* of the last holder */
} gilscope_gil_addresses;

/* `interp` is a PyInterpreterState*; NULL means the current one.
 * Returns 0 on success, -1 when the interpreter has no GIL. */
int gilscope_gil_addresses_of(void* interp, gilscope_gil_addresses* out);

/* The current PyThreadState*, as an integer (0 when none). */
uintptr_t gilscope_current_tstate(void);

/* Whether interp shares the main interpreter's GIL (always 1 on 3.11). */
int gilscope_interp_shares_main_gil(void* interp);

/* The Python frame running in `tstate` (a PyThreadState*) as it releases the
 * GIL: an id for its code object (the object's address, with the owning
 * interpreter's id in the top 16 bits; the object is kept alive until that
 * interpreter calls gilscope_code_registry_drain) and the line being
 * executed. Returns 1 when it is the frame this thread's previous successful
 * call returned (same code object, instruction and interpreter), 0 when it
 * is another, -1 when there is no Python frame or the registry is full.
 * Any interpreter, own GIL or shared.
 * PRECONDITION: tstate's thread still owns its interpreter's GIL (drop_gil
 * has not yet cleared gil->locked), so no other thread can touch the frame
 * or the code object's reference count. */
int gilscope_probe_frame(const void* tstate, uint64_t* code_id, uint32_t* line);

/* Calls fn for every code object the probe kept for the current
 * interpreter, then releases them. Ids are process-local: the reader pairs
 * them with the pid that wrote them.
 * PRECONDITION: the current interpreter's GIL is held; call it before the
 * interpreter ends (its atexit), or before the process exits. */
typedef void (*gilscope_code_fn)(uint64_t id, const char* qualname, const char* filename,
                                 int first_line, void* ctx);
void gilscope_code_registry_drain(gilscope_code_fn fn, void* ctx);

#ifdef __cplusplus
}
#endif

#endif /* GILSCOPE_HOOKS_GIL_SHIM_H_ */
