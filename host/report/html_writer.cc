// The page is host/report/html/report.html with five slots filled in:
// @@CSP_SCRIPT@@ (the script's hash for the Content-Security-Policy),
// @@CSS@@, @@EXCEPTIONS@@ (static HTML, escaped), @@DATA@@ (the escaped
// JSON) and @@JS@@. The data document is
// streamed in pieces rather than built as one nlohmann::json: at a million
// intervals its typed arrays alone are ~20 MB of base64.

#include "report/html_writer.h"

#include <algorithm>
#include <array>
#include <bit>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "report/html_assets.h"
#include "report/json_writer.h"
#include "report/text_util.h"

namespace gilscope::report {
namespace {

using nlohmann::ordered_json;

// Interval codes (the "codes" array): bit 31 set for a hold, bits 23..30 the
// event's GIL id, bits 0..22 the Analysis::sites index (kUnknownSite beyond).
constexpr std::uint32_t kHoldingBit = 1u << 31;
constexpr int kGilShift = 23;
constexpr std::uint32_t kSiteMask = (1u << kGilShift) - 1;

// Upper edges of the histogram buckets but the last, in ns: 1-2-5 steps.
constexpr std::array<std::uint64_t, HtmlWriter::kHistogramBuckets - 1> kBucketEdges = {
    1'000,      2'000,      5'000,       10'000,      20'000,      50'000,      100'000,
    200'000,    500'000,    1'000'000,   2'000'000,   5'000'000,   10'000'000,  20'000'000,
    50'000'000, 100'000'000, 200'000'000, 500'000'000, 1'000'000'000};

std::string Dump(const ordered_json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, ordered_json::error_handler_t::replace);
}

// Base64url with padding: no '/' so the page never contains "//", and
// atob() reads it once '-' and '_' are mapped back. Streams to `out` through
// a small buffer: at 10M events a row's arrays are ~140 MB of text, which
// is not worth holding in memory only to copy it out.
class Base64UrlStream {
 public:
  explicit Base64UrlStream(std::ostream& out) : out_(out) { text_.reserve(kTextChunk + 4); }

  void Append(const std::uint8_t* bytes, std::size_t n) {
    // Complete a group left over from the last call.
    while (count_ > 0 && count_ < 3 && n > 0) {
      pending_[count_++] = *bytes++;
      --n;
    }
    if (count_ == 3) {
      Encode(pending_.data());
      count_ = 0;
    }
    for (; n >= 3; bytes += 3, n -= 3) {
      Encode(bytes);
      if (text_.size() >= kTextChunk) Drain();
    }
    for (; n > 0; --n) pending_[count_++] = *bytes++;
  }

  // Pads the last group with '=' and writes out what is left.
  void Finish() {
    if (count_ > 0) {
      const std::size_t n = count_;
      while (count_ < 3) pending_[count_++] = 0;
      Encode(pending_.data());
      text_.resize(text_.size() - (3 - n));
      text_.append(3 - n, '=');
      count_ = 0;
    }
    Drain();
  }

 private:
  static constexpr std::size_t kTextChunk = 64 * 1024;

  void Encode(const std::uint8_t* group) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const std::uint32_t v = (std::uint32_t{group[0]} << 16) | (std::uint32_t{group[1]} << 8) | group[2];
    const char quad[4] = {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
                          kAlphabet[v & 63]};
    text_.append(quad, sizeof quad);
  }

  void Drain() {
    out_.write(text_.data(), static_cast<std::streamsize>(text_.size()));
    text_.clear();
  }

  std::ostream& out_;
  std::string text_;
  std::array<std::uint8_t, 3> pending_{};
  std::size_t count_ = 0;
};

// Little-endian bytes of each value of a typed array.
void StoreLe(std::uint8_t* at, std::uint64_t v, int bytes) {
  for (int k = 0; k < bytes; ++k) at[k] = static_cast<std::uint8_t>(v >> (8 * k));
}

// Writes one typed array (`Width` bytes per interval, `bits` giving them) as
// base64url, a block of intervals at a time.
template <int Width, class Bits>
void WriteTypedArray(std::ostream& out, const std::vector<StateInterval>& ivs, Bits&& bits) {
  constexpr std::size_t kBlock = 3 * 1024;  // intervals; a multiple of 3 keeps groups whole
  std::array<std::uint8_t, kBlock * Width> bytes;
  Base64UrlStream b64(out);
  for (std::size_t first = 0; first < ivs.size(); first += kBlock) {
    const std::size_t n = std::min(kBlock, ivs.size() - first);
    for (std::size_t k = 0; k < n; ++k) StoreLe(bytes.data() + k * Width, bits(ivs[first + k]), Width);
    b64.Append(bytes.data(), n * Width);
  }
  b64.Finish();
}

// Standard base64 of the SHA-256 given in hex, as CSP's 'sha256-...' wants.
std::string HexToBase64(std::string_view hex) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto nibble = [](char c) -> std::uint32_t {
    return c <= '9' ? static_cast<std::uint32_t>(c - '0') : static_cast<std::uint32_t>(c - 'a' + 10);
  };
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<std::uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  }
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    if (n > 1) v |= std::uint32_t{bytes[i + 1]} << 8;
    if (n > 2) v |= bytes[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(n > 1 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(n > 2 ? kAlphabet[v & 63] : '=');
  }
  return out;
}

std::uint32_t IntervalCode(const StateInterval& iv) {
  const std::uint32_t site = iv.site <= kSiteMask ? iv.site : kUnknownSite;
  return (iv.state == GilState::kHolding ? kHoldingBit : 0) | (std::uint32_t{iv.gil} << kGilShift) | site;
}

// One thread's row: lifetime, intervals as typed arrays, wait histogram.
void WriteThreadRow(std::ostream& out, const ThreadStats& t, std::uint64_t origin) {
  const auto& ivs = t.intervals;
  std::array<std::uint64_t, HtmlWriter::kHistogramBuckets> histogram{};
  for (std::size_t k = 0; k + 1 < ivs.size(); ++k) {
    // A completed wait: the hold on the same GIL starts where the wait ends.
    const StateInterval& iv = ivs[k];
    if (iv.state == GilState::kWaiting && ivs[k + 1].state == GilState::kHolding &&
        ivs[k + 1].start_ns == iv.end_ns && ivs[k + 1].gil == iv.gil) {
      ++histogram[HtmlWriter::HistogramBucket(iv.end_ns - iv.start_ns)];
    }
  }
  out << "{\"start_ns\":" << (t.lifetime_start_ns - origin) << ",\"end_ns\":" << (t.lifetime_end_ns - origin)
      << ",\"count\":" << ivs.size() << ",\"starts\":\"";
  // Relative ns are exact in a double up to 104 days.
  WriteTypedArray<8>(out, ivs, [origin](const StateInterval& iv) {
    return std::bit_cast<std::uint64_t>(static_cast<double>(iv.start_ns - origin));
  });
  out << "\",\"durations\":\"";
  WriteTypedArray<4>(out, ivs, [](const StateInterval& iv) {
    return std::uint64_t{std::bit_cast<std::uint32_t>(static_cast<float>(iv.end_ns - iv.start_ns))};
  });
  out << "\",\"codes\":\"";
  WriteTypedArray<4>(out, ivs, [](const StateInterval& iv) { return std::uint64_t{IntervalCode(iv)}; });
  out << "\",\"wait_histogram\":[";
  for (std::size_t b = 0; b < histogram.size(); ++b) out << (b > 0 ? "," : "") << histogram[b];
  out << "]}";
}

void WriteTimeline(std::ostream& out, const Analysis& analysis) {
  const std::uint64_t origin = analysis.start_ns;
  out << "{\"window_ns\":" << (analysis.end_ns - analysis.start_ns) << ",\"histogram_edges_ns\":[";
  for (std::size_t b = 0; b < kBucketEdges.size(); ++b) out << (b > 0 ? "," : "") << kBucketEdges[b];
  out << "],\"threads\":[";
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    if (i > 0) out << ',';
    WriteThreadRow(out, analysis.threads[i], origin);
  }

  out << "],\"sites\":[";
  for (std::size_t s = 0; s < analysis.sites.size(); ++s) {
    const CodeSite& site = analysis.sites[s];
    if (s > 0) out << ',';
    out << HtmlWriter::EscapeForScript(Dump(ordered_json::array({site.function, site.file, site.line})));
  }

  // Markers: [thread, start, end, name, region, depth, open], names once.
  std::unordered_map<std::string, std::size_t> name_index;
  std::vector<const std::string*> names;
  out << "],\"markers\":[";
  for (std::size_t k = 0; k < analysis.markers.size(); ++k) {
    const Marker& m = analysis.markers[k];
    const auto [it, inserted] = name_index.emplace(m.name, names.size());
    if (inserted) names.push_back(&it->first);
    out << (k > 0 ? ",[" : "[") << m.thread << ',' << (m.start_ns - origin) << ',' << (m.end_ns - origin) << ','
        << it->second << ',' << (m.region ? 1 : 0) << ',' << m.depth << ',' << (m.open ? 1 : 0) << ']';
  }
  out << "],\"marker_names\":";
  ordered_json marker_names = ordered_json::array();
  for (const std::string* name : names) marker_names.push_back(*name);
  out << HtmlWriter::EscapeForScript(Dump(marker_names)) << '}';
}

// Text for an HTML element's content: valid UTF-8 (bad bytes become '?'),
// markup characters escaped, newlines and tabs kept (for <pre>).
std::string EscapeHtml(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t begin = 0;
  while (begin <= text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    for (char c : Sanitize(text.substr(begin, end - begin))) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    if (end < text.size()) out += '\n';
    begin = end + 1;
  }
  return out;
}

// The script's uncaught exceptions: a panel of its own, drawn without
// JavaScript (so even a page whose script fails shows them).
void WriteExceptions(std::ostream& out, const RunTrace& trace) {
  if (trace.exceptions.empty()) return;
  out << "  <section class=\"panel exceptions\" id=\"exceptions-panel\">\n"
      << "    <h2>Exceptions (" << trace.exceptions.size() << " uncaught, each ended its thread)</h2>\n";
  for (const ScriptException& e : trace.exceptions) {
    out << "    <h3>" << EscapeHtml(e.thread) << " (pid " << e.pid << "): " << EscapeHtml(e.type);
    if (!e.message.empty()) out << ": " << EscapeHtml(e.message);
    out << "</h3>\n    <pre>" << EscapeHtml(e.traceback) << "</pre>\n";
  }
  out << "  </section>\n";
}

// Writes `page` up to the slot named `slot` and returns what follows it.
std::string_view WriteUntil(std::ostream& out, std::string_view page, std::string_view slot) {
  const std::size_t at = page.find(slot);
  if (at == std::string_view::npos) {
    out << page;
    return {};
  }
  out << page.substr(0, at);
  return page.substr(at + slot.size());
}

}  // namespace

std::string HtmlWriter::EscapeForScript(const std::string& json) {
  std::string out;
  out.reserve(json.size() + json.size() / 16);
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    switch (c) {
      case '\\':
        // An escape sequence is already safe; copying its second character
        // too keeps an escaped "\/" from becoming "\\/".
        out += c;
        if (i + 1 < json.size()) out += json[++i];
        break;
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      case '/':
        out += "\\/";
        break;
      case '\xE2':
        // U+2028 / U+2029 (E2 80 A8 / E2 80 A9): line terminators to older
        // JavaScript parsers, so never raw in a script element.
        if (i + 2 < json.size() && json[i + 1] == '\x80' && (json[i + 2] == '\xA8' || json[i + 2] == '\xA9')) {
          out += json[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
          i += 2;
          break;
        }
        out += c;
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::size_t HtmlWriter::HistogramBucket(std::uint64_t ns) {
  std::size_t b = 0;
  while (b < kBucketEdges.size() && ns >= kBucketEdges[b]) ++b;
  return b;
}

void HtmlWriter::Write(const RunTrace& trace, const Analysis& analysis) const {
  Write(trace, analysis, PlanChromeTrace(analysis));
}

void HtmlWriter::Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) const {
  std::string_view page(html_assets::kPage, html_assets::kPageSize);
  page = WriteUntil(out_, page, "@@CSP_SCRIPT@@");
  out_ << "'sha256-" << HexToBase64(html_assets::kJsSha256Hex) << "'";
  page = WriteUntil(out_, page, "@@CSS@@");
  out_.write(html_assets::kCss, static_cast<std::streamsize>(html_assets::kCssSize));
  page = WriteUntil(out_, page, "@@EXCEPTIONS@@");
  WriteExceptions(out_, trace);
  page = WriteUntil(out_, page, "@@DATA@@");
  out_ << "{\"report\":" << EscapeForScript(Dump(JsonWriter::ToJson(trace, analysis, plan))) << ",\"timeline\":";
  WriteTimeline(out_, analysis);
  out_ << '}';
  page = WriteUntil(out_, page, "@@JS@@");
  out_.write(html_assets::kJs, static_cast<std::streamsize>(html_assets::kJsSize));
  out_ << page;
}

}  // namespace gilscope::report
