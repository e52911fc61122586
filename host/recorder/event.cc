#include "recorder/event.h"

namespace gilscope::recorder {

const char* KindName(EventKind kind) {
  switch (kind) {
    case EventKind::kRequest: return "request";
    case EventKind::kWaitTimeout: return "wait_timeout";
    case EventKind::kAcquired: return "acquired";
    case EventKind::kReleased: return "released";
    case EventKind::kThreadState: return "thread_state";
    case EventKind::kThreadExit: return "thread_exit";
    case EventKind::kFrame: return "frame";
    case EventKind::kMark: return "mark";
    case EventKind::kRegionBegin: return "region_begin";
    case EventKind::kRegionEnd: return "region_end";
  }
  return "unknown";
}

}  // namespace gilscope::recorder
