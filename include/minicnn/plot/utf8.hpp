// UTF-8 hygiene for strings that come from file and folder names (class names, image paths):
// such bytes need not be valid UTF-8 and may hold control characters. Cairo refuses invalid UTF-8
// by putting its whole context into an error state, and HTML forbids raw control characters, so
// every string is decoded here (strictly: no overlong forms, no surrogates, nothing above
// U+10FFFF), and each bad byte becomes U+FFFD REPLACEMENT CHARACTER.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace minicnn::plot {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Decodes the code point that starts at s[i]; returns how many bytes it took (at least 1). An
// invalid or truncated sequence yields U+FFFD and consumes one byte, so decoding resumes at the
// next byte (the behaviour WHATWG's decoder has for the first byte of a bad sequence).
inline std::size_t utf8_decode(const std::string& s, std::size_t i, uint32_t* cp) {
  const auto byte = [&](std::size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t b0 = byte(i);
  *cp = kReplacementChar;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  std::size_t len = 0;
  uint32_t v = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, v = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, v = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, v = b0 & 0x07, min = 0x10000;
  } else {
    return 1;  // a continuation byte or 0xF8..0xFF where a sequence should start
  }
  if (i + len > s.size()) return 1;
  for (std::size_t k = 1; k < len; ++k) {
    const uint8_t b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 1;
    v = (v << 6) | (b & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
  *cp = v;
  return len;
}

inline void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// C0 controls, DEL and the C1 controls U+0080..U+009F.
inline bool is_control(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

// Valid UTF-8 fit for drawing on one line: invalid bytes and control characters become U+FFFD,
// except tab, line feed and carriage return, which become spaces.
inline std::string utf8_printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    i += utf8_decode(s, i, &cp);
    if (cp == '\t' || cp == '\n' || cp == '\r') cp = ' ';
    if (is_control(cp)) cp = kReplacementChar;
    utf8_append(out, cp);
  }
  return out;
}

}  // namespace minicnn::plot
