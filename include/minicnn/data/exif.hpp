// JPEG EXIF orientation: reading the Orientation tag (0x0112) from a JPEG's APP1 "Exif"
// segment and turning decoded pixels upright, as PIL's ImageOps.exif_transpose does.
// Phones store pictures as the sensor saw them and record the rotation in this tag;
// without it a portrait photo trains sideways. Keras' load_img ignores the tag, so the
// loader makes it an option (on by default).
// Values 1..8 as in the TIFF/EXIF specification: 1 upright, 2 mirrored left-right,
// 3 rotated 180, 4 mirrored top-bottom, 5 transposed, 6 needs 90 degrees clockwise,
// 7 transversed, 8 needs 90 degrees counter-clockwise. Anything unreadable counts as 1:
// a broken EXIF block must not make a decodable photo unusable.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "image.hpp"

namespace minicnn {

namespace exif_detail {
inline uint32_t read_u16(const unsigned char* p, bool little) {
  return little ? uint32_t(p[0]) | uint32_t(p[1]) << 8 : uint32_t(p[0]) << 8 | uint32_t(p[1]);
}
inline uint32_t read_u32(const unsigned char* p, bool little) {
  return little
             ? uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24
             : uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// Orientation from a TIFF block (the APP1 payload after "Exif\0\0"); 1 when absent.
inline int orientation_from_tiff(const unsigned char* t, size_t n) {
  if (n < 8) return 1;
  bool little;
  if (t[0] == 'I' && t[1] == 'I')
    little = true;
  else if (t[0] == 'M' && t[1] == 'M')
    little = false;
  else
    return 1;
  if (read_u16(t + 2, little) != 42) return 1;
  const uint64_t ifd = read_u32(t + 4, little);
  if (ifd + 2 > n) return 1;
  const uint32_t count = read_u16(t + ifd, little);
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t e = ifd + 2 + uint64_t(i) * 12;
    if (e + 12 > n) return 1;
    if (read_u16(t + e, little) != 0x0112) continue;
    const uint32_t type = read_u16(t + e + 2, little);
    // SHORT (3) as the standard says; some writers use LONG (4).
    uint32_t v = type == 3   ? read_u16(t + e + 8, little)
                 : type == 4 ? read_u32(t + e + 8, little)
                             : 0;
    return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
  }
  return 1;
}
}  // namespace exif_detail

// The EXIF orientation of a JPEG file's bytes (1 for other formats or without the tag).
inline int jpeg_exif_orientation(const unsigned char* b, size_t n) {
  if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return 1;
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (b[pos] != 0xFF) return 1;
    const unsigned char m = b[pos + 1];
    if (m == 0xFF) {
      ++pos;
      continue;
    }
    if (m == 0xDA || m == 0xD9) return 1;  // image data starts: no EXIF before it
    const size_t len = size_t(b[pos + 2]) << 8 | b[pos + 3];
    if (len < 2 || pos + 2 + len > n) return 1;
    const unsigned char* seg = b + pos + 4;
    const size_t seg_n = len - 2;
    if (m == 0xE1 && seg_n >= 6 && seg[0] == 'E' && seg[1] == 'x' && seg[2] == 'i' &&
        seg[3] == 'f' && seg[4] == 0 && seg[5] == 0)
      return exif_detail::orientation_from_tiff(seg + 6, seg_n - 6);
    pos += 2 + len;
  }
  return 1;
}
inline int jpeg_exif_orientation(const std::vector<char>& bytes) {
  return jpeg_exif_orientation(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

// Turns `img` upright for an EXIF orientation (1..8); returns it unchanged for 1.
inline Image apply_exif_orientation(const Image& img, int orientation) {
  if (orientation <= 1 || orientation > 8) return img;
  const int w = img.width, h = img.height;
  const bool swap = orientation >= 5;  // 5..8 exchange width and height
  Image out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(img.pixels.size());
  // For each output pixel (x, y), the source pixel it shows.
  for (int y = 0; y < out.height; ++y) {
    uint8_t* o = out.row(y);
    for (int x = 0; x < out.width; ++x) {
      int sx, sy;
      switch (orientation) {
        case 2: sx = w - 1 - x, sy = y; break;
        case 3: sx = w - 1 - x, sy = h - 1 - y; break;
        case 4: sx = x, sy = h - 1 - y; break;
        case 5: sx = y, sy = x; break;                  // transpose
        case 6: sx = y, sy = h - 1 - x; break;          // rotate 90 clockwise
        case 7: sx = w - 1 - y, sy = h - 1 - x; break;  // transverse
        default: sx = w - 1 - y, sy = x; break;         // 8: rotate 90 counter-clockwise
      }
      const uint8_t* s = img.row(sy) + size_t(sx) * 3;
      o[size_t(x) * 3] = s[0];
      o[size_t(x) * 3 + 1] = s[1];
      o[size_t(x) * 3 + 2] = s[2];
    }
  }
  return out;
}

}  // namespace minicnn
