// Turns what the recorder gathered (the arena's GIL and process registries
// plus each thread's drained events) into a RunTrace for analysis.
//
// No CPython here, so the hooks tests build their traces the same way the
// host does.
#pragma once

#include <vector>

#include "recorder/arena.h"
#include "recorder/collector.h"
#include "report/run_trace.h"

namespace gilscope::runner {

// Fills trace.gils, trace.processes, trace.threads and trace.dropped_no_slot
// from the arena and the drained logs (moved from). The window
// (start_ns/end_ns) spans every GIL's window; info is left as it is.
void CollectInto(recorder::Arena& arena, std::vector<recorder::ThreadLog> logs,
                 std::uint64_t dropped_no_slot, report::RunTrace& trace);

}  // namespace gilscope::runner
