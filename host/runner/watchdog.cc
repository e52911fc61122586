#include "runner/watchdog.h"

#include "hooks/pthread_hooks.h"

#include <Python.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "python/py_ref.h"
#include "recorder/clock.h"
#include "recorder/producer.h"

namespace gilscope::runner {
namespace {

// Describes the deadlock from the threads' frames; run with the GIL held
// while every script thread is blocked. Lock expressions are evaluated only
// when they are plain names, attributes and subscripts by a name or a
// constant, so describing never runs the script's code.
constexpr const char* kDescribe = R"PY(
import ast, json, linecache, sys, threading, traceback

def _safe_eval(node, frame):
    if isinstance(node, ast.Name):
        if node.id in frame.f_locals:
            return frame.f_locals[node.id], node.id
        if node.id in frame.f_globals:
            return frame.f_globals[node.id], node.id
        raise LookupError(node.id)
    if isinstance(node, ast.Attribute):
        base, label = _safe_eval(node.value, frame)
        return getattr(base, node.attr), label + "." + node.attr
    if isinstance(node, ast.Subscript):
        base, label = _safe_eval(node.value, frame)
        key = node.slice
        if isinstance(key, ast.Constant):
            k = key.value
        else:
            k, _ = _safe_eval(key, frame)
        if not isinstance(k, (str, int)):
            raise LookupError("key")
        return base[k], "%s[%r]" % (label, k)
    raise LookupError(type(node).__name__)

_trees = {}
def _tree(filename):
    if filename not in _trees:
        try:
            _trees[filename] = ast.parse("".join(linecache.getlines(filename)))
        except (SyntaxError, ValueError):
            _trees[filename] = None
    return _trees[filename]

def _label(obj, label, frame):
    """A name the reader knows the lock by: a module-level name bound to it,
    or an entry of a module-level dict, over a local alias."""
    for name, value in frame.f_globals.items():
        if value is obj and not name.startswith("__"):
            return name
    for name, value in frame.f_globals.items():
        if isinstance(value, dict) and not name.startswith("__"):
            for k, v in value.items():
                if v is obj and isinstance(k, (str, int)):
                    return "%s[%r]" % (name, k)
    return label

def _locks_at(frame):
    """(waiting_for, held): the lock this frame's line acquires, and the
    locks of the `with` blocks enclosing it, as (object, label) pairs."""
    tree = _tree(frame.f_code.co_filename)
    line = frame.f_lineno
    wanted, held = None, []
    if tree is None:
        return wanted, held
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)) and node.lineno <= line <= (node.end_lineno or node.lineno):
            for item in node.items:
                try:
                    pair = _safe_eval(item.context_expr, frame)
                except Exception:
                    continue
                pair = (pair[0], _label(pair[0], pair[1], frame))
                if node.lineno == line:
                    wanted = pair
                else:
                    held.append(pair)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "acquire" and node.lineno == line):
            try:
                obj, label = _safe_eval(node.func.value, frame)
                wanted = (obj, _label(obj, label, frame))
            except Exception:
                pass
    return wanted, held

def describe():
    frames = sys._current_frames()
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    threads = []
    for ident, top in frames.items():
        if ident == me:
            continue
        stack = traceback.extract_stack(top)
        waiting = None
        held = []
        f = top
        while f is not None:
            w, h = _locks_at(f)
            if waiting is None and w is not None:
                waiting = w
            held.extend(h)
            f = f.f_back
        threads.append({"ident": ident, "name": names.get(ident, "thread %d" % ident),
                        "waiting": waiting, "held": held,
                        "stack": "".join(traceback.format_list(stack))})
    holders = {}
    for t in threads:
        for obj, label in t["held"]:
            holders[id(obj)] = t["name"]
    out = []
    cycle = []
    for t in threads:
        w = t["waiting"]
        holder = holders.get(id(w[0])) if w else None
        if w:
            cycle.append("%s waits for %s%s" % (t["name"], w[1], " (held by %s)" % holder if holder else ""))
        out.append({"name": t["name"], "native_id": 0, "waiting_for": w[1] if w else "",
                    "held_by": holder or "", "holds": [label for _, label in t["held"]],
                    "stack": t["stack"]})
    summary = "; ".join(cycle) if cycle else "every thread is blocked on a lock"
    return json.dumps({"summary": summary, "threads": out})
)PY";

}  // namespace

std::string DeadlockFilePath(const std::string& arena_path) { return arena_path + ".deadlock.json"; }

namespace {
std::atomic<Watchdog*> g_armed{nullptr};
}  // namespace

Watchdog::Watchdog(recorder::Arena& arena, double after_s) : arena_(arena), after_s_(after_s) {
  if (after_s_ <= 0) return;
  owner_ = getpid();
  g_armed.store(this, std::memory_order_release);
  hooks::SetOnLockBlock(&Watchdog::OnLockBlock);
}

void Watchdog::OnLockBlock() {
  Watchdog* w = g_armed.load(std::memory_order_acquire);
  // After the first call, one load: started_ stays true.
  if (w == nullptr || w->started_.load(std::memory_order_acquire)) return;
  // A forked child inherits the callback, not the thread: it is not watched
  // (as before: its parent's watchdog looks at the parent's threads only).
  if (getpid() != w->owner_) return;
  w->Start();
}

void Watchdog::Start() {
  std::lock_guard<std::mutex> lock(start_mutex_);
  if (closed_ || started_.load(std::memory_order_relaxed)) return;
  thread_ = std::thread([this] { Loop(); });
  started_.store(true, std::memory_order_release);
}

Watchdog::~Watchdog() {
  if (after_s_ <= 0) return;
  hooks::SetOnLockBlock(nullptr);
  Watchdog* self = this;
  g_armed.compare_exchange_strong(self, nullptr, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lock(start_mutex_);
    closed_ = true;
    started_.store(true, std::memory_order_release);
  }
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

bool Watchdog::AllBlockedSince(std::uint64_t now_ns) {
  const auto pid = static_cast<std::uint32_t>(getpid());
  const auto limit = static_cast<std::uint64_t>(after_s_ * 1e9);
  const std::uint32_t claimed = arena_.claimed();
  if (seen_.size() < claimed) seen_.resize(claimed);
  int live = 0;
  bool all = true;
  for (std::uint32_t i = 0; i < claimed; ++i) {
    const recorder::SlotHeader& s = arena_.slot(i);
    if (s.pid != pid || s.state.load(std::memory_order_acquire) != recorder::SlotState::kActive) continue;
    ++live;
    // Odd: in a lock wait. The same odd value as at an earlier check: the
    // same wait, unbroken since then (a thread keeps no clock of its own).
    const std::uint64_t seq = s.lock_wait_seq.load(std::memory_order_relaxed);
    Seen& seen = seen_[i];
    if (seq % 2 == 0) {
      all = false;
      continue;
    }
    if (seen.seq != seq) seen = Seen{seq, now_ns};
    if (now_ns - seen.since_ns < limit) all = false;
  }
  return live > 0 && all;
}

void Watchdog::Loop() {
  // A thread that is not Python's (no slot) never blocks the verdict; one
  // that is, and runs, resets it at its next check.
  while (!stop_.load(std::memory_order_relaxed)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (AllBlockedSince(recorder::NowNs())) ReportAndExit();
  }
}

void Watchdog::ReportAndExit() {
  // relaxed is enough: the supervisor reads it after waitpid.
  arena_.header().run.outcome.store(recorder::RunRecord::kDeadlock, std::memory_order_release);
  recorder::SetCurrentThreadName("gilscope-watchdog");
  const PyGILState_STATE gil = PyGILState_Ensure();
  std::string text;
  if (PyObject* globals = PyDict_New()) {
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    python::PyRef r = python::PyRef::Steal(PyRun_String(kDescribe, Py_file_input, globals, globals));
    PyObject* fn = r ? PyDict_GetItemString(globals, "describe") : nullptr;  // borrowed
    python::PyRef out = fn ? python::PyRef::Steal(PyObject_CallNoArgs(fn)) : python::PyRef();
    if (out && PyUnicode_Check(out.get())) {
      if (const char* c = PyUnicode_AsUTF8(out.get())) text = c;
    }
    if (PyErr_Occurred()) PyErr_Print();
    Py_DECREF(globals);
  }
  if (!text.empty() && !arena_.path().empty()) {
    const std::string path = DeadlockFilePath(arena_.path());
    if (FILE* f = std::fopen(path.c_str(), "w")) {
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    }
  }
  std::fprintf(stderr, "gilscope: deadlock: every thread has been blocked on a lock for %.1f s; ending the run\n",
               after_s_);
  std::fflush(nullptr);
  (void)gil;  // never released: the process ends here, holding the GIL
  _exit(3);
}

}  // namespace gilscope::runner
