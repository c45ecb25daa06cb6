// Tiny JPEGs written byte by byte for the decoder tests (test_image.cpp, test_camera.cpp):
// every field is chosen, so a test knows what stb_image and libjpeg-turbo must do with it.
#pragma once
#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace minicnn_test_jpeg {

// A gray 8x8 JPEG written byte by byte: one quantisation table of ones, DC table 0 and AC
// table 0 with a single 1-bit code each (DC difference 0, end of block), so every block
// decodes to 128. Baseline: one scan of both tables. Progressive: a first DC scan, then the
// AC table and an AC scan (1-63) of tables 0, as libjpeg orders them. `scan_tables` is the
// first scan's selector byte (DC table << 4 | AC table); `with_ac` false leaves the AC table out,
// `with_dqt` false the quantisation table.
inline std::string tiny_jpeg(bool progressive, unsigned char scan_tables = 0x00,
                             bool with_ac = true, bool with_dqt = true) {
  const std::string one_code("\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 17);  // counts, symbol 0
  const std::string dc = std::string("\xff\xc4\x00\x14\x00", 5) + one_code;
  const std::string ac = std::string("\xff\xc4\x00\x14\x10", 5) + one_code;
  std::string j("\xff\xd8", 2);
  if (with_dqt) j += std::string("\xff\xdb\x00\x43\x00", 5) + std::string(64, '\x01');
  j += std::string(progressive ? "\xff\xc2" : "\xff\xc0", 2);
  j += std::string("\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00", 11);
  j += dc;
  auto scan = [&](unsigned char tables, unsigned char ss, unsigned char se) {
    j += std::string("\xff\xda\x00\x08\x01\x01", 6);
    j += std::string{char(tables), char(ss), char(se), '\0'};
  };
  if (progressive) {
    scan(scan_tables, 0, 0);
    j += '\x7f';  // DC code 0, then 1s to the byte's end
    if (with_ac) j += ac;
    scan(0x00, 1, 63);
    j += '\x7f';  // end of band
  } else {
    if (with_ac) j += ac;
    scan(scan_tables, 0, 63);
    j += '\x3f';  // DC code 0, end of block
  }
  return j + "\xff\xd9";
}

// tiny_jpeg(true) with its AC scan repeated until the file has `scans` scans (stb_image and
// libjpeg-turbo decode a repeated first AC scan as a new pass over the same band).
inline std::vector<char> many_scan_jpeg(int scans) {
  std::string j = tiny_jpeg(true);
  const std::string ac_scan = std::string("\xff\xda\x00\x08\x01\x01\x00\x01\x3f\x00\x7f", 11);
  REQUIRE(j.find(ac_scan) != std::string::npos);
  std::string extra;
  for (int k = 2; k < scans; ++k) extra += ac_scan;
  j.insert(j.size() - 2, extra);
  return std::vector<char>(j.begin(), j.end());
}

}  // namespace minicnn_test_jpeg
