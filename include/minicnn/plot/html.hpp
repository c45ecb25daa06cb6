// Text encodings for the HTML report: escaping of arbitrary strings (file and folder names, class
// names, settings) for HTML text and quoted attribute values, and base64 (RFC 4648, standard
// alphabet, '=' padding) for pictures inlined as data: URIs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "utf8.hpp"

namespace minicnn::plot {

// Safe in text and in single- or double-quoted attribute values: & < > " ' become entities; tab,
// line feed and carriage return become numeric references (kept, and not normalised away inside
// attributes); other control characters and invalid UTF-8 bytes become U+FFFD, because HTML
// forbids them even as numeric references.
inline std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (std::size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    i += utf8_decode(s, i, &cp);
    switch (cp) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\t': out += "&#9;"; break;
      case '\n': out += "&#10;"; break;
      case '\r': out += "&#13;"; break;
      default:
        if (is_control(cp) || cp == kReplacementChar)
          out += "&#xFFFD;";
        else
          utf8_append(out, cp);
    }
  }
  return out;
}

inline std::string base64(const uint8_t* data, std::size_t n) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (n - i == 1) {
    const uint32_t v = uint32_t(data[i]) << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (n - i == 2) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

inline std::string base64(const std::vector<uint8_t>& bytes) {
  return base64(bytes.data(), bytes.size());
}

}  // namespace minicnn::plot
