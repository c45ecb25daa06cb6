// A replay of stb_image 2.27's JPEG entropy decoding (Huffman decoding, restart markers,
// progressive scans; no dequantisation, no IDCT) that finds what makes stb itself misbehave,
// before stb sees the file. docs/fuzzing.md lists the findings:
//  - entropy-coded data that runs out inside a block (a marker where the scan still needs
//    bits): stb's bit reader then counts a negative number of bits, and its next refill
//    shifts by 32 or more (undefined behaviour, findings 14 and 15);
//  - a DC coefficient that leaves int: stb computes dc_pred + diff and dc * dequant[0]
//    (baseline) or dc * 2^Al (progressive) in int, with no check.
// What the replay mirrors, because the outcome depends on it: stb's reader (bytes loaded
// while it holds at most 24 bits, FF 00 unstuffing, a marker ending the data, zero bits after
// it), when stb refills (the same call sites), its 9-bit fast tables (the fast AC path
// consumes a code and its magnitude bits without checking what it holds), the restart logic
// (a non-RST marker after an interval ends the scan), progressive state (which coefficients
// are non-zero decides which refinement bits are read) and where stb looks for the next
// marker after a scan. Where stb would fail by itself (a bad code, a bad header) the replay
// stops and reports nothing: stb refuses such a file safely.
// Written for minicnn from stb_image's documented behaviour and source as a specification;
// no stb code is copied.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace minicnn {
namespace image_detail {

// Each scan is a pass over every block of the image, so a small file with thousands of
// scans costs as much as thousands of images. The replay refuses more than this many, the
// limit libjpeg-turbo's TJFLAG_LIMITSCANS sets (the camera path passes that flag); photos
// from encoders have about 10.
constexpr int kMaxJpegScans = 500;

class StbJpegReplay {
 public:
  StbJpegReplay(const unsigned char* b, size_t n) : b_(b), n_(n) {}

  // Empty when stb_image would decode the entropy-coded data without undefined behaviour
  // (or refuse the file by itself); otherwise what is wrong, with byte positions.
  std::string run() {
    if (!header()) return "";
    int m = marker_or_none();
    while (m != 0xD9 && problem_.empty()) {
      if (m == 0xDA) {
        if (++scans_ > kMaxJpegScans) {
          problem_ = "JPEG image has more than " + std::to_string(kMaxJpegScans) + " scans (scan " +
                     std::to_string(scans_) + " starts at byte " +
                     std::to_string(pos_ >= 2 ? pos_ - 2 : 0) +
                     "); each scan is a pass over the whole image, so minicnn refuses more, "
                     "as libjpeg-turbo does (corrupt or crafted)";
          return problem_;
        }
        if (!scan_header() || !entropy_data()) return problem_;
        if (marker_ == kNone)  // stb looks for the next FF and takes the byte after it
          while (pos_ < n_)
            if (get8() == 0xFF) {
              marker_ = get8();
              break;
            }
      } else if (m == 0xDC) {  // DNL
        const unsigned ld = get16(), nl = get16();
        if (ld != 4 || nl != height_) return "";
      } else if (!segment(m)) {
        return "";
      }
      m = marker_or_none();
    }
    reached_end_ = m == 0xD9;
    return problem_;
  }
  // Whether the replay got to the EOI through every scan (for a sound file it must, as stb
  // does: the tests check that the replay keeps step with stb on real photos).
  bool reached_end() const { return reached_end_; }

 private:
  static constexpr int kNone = 0xFF;  // stb's "no marker"
  static constexpr int kFastBits = 9;
  struct Huffman {
    bool built = false;
    uint8_t fast[1 << kFastBits];
    uint16_t code[256];
    uint8_t values[256];
    uint8_t size[257];
    uint32_t maxcode[18];
    int delta[17];
  };
  struct Component {
    int id = 0, h = 1, v = 1, tq = 0, hd = 0, ha = 0;
    int64_t x = 0, y = 0, coeff_w = 0, dc_pred = 0;
    std::vector<uint64_t> nonzero;  // progressive: one bit per coefficient (natural order)
  };

  // ---- bytes, as stb's context reads them (0 past the end)
  int get8() { return pos_ < n_ ? b_[pos_++] : 0; }
  unsigned get16() {
    const unsigned hi = unsigned(get8());
    return hi << 8 | unsigned(get8());
  }
  int marker_or_none() {  // stb__get_marker
    if (marker_ != kNone) {
      const int x = marker_;
      marker_ = kNone;
      return x;
    }
    int x = get8();
    if (x != 0xFF) return kNone;
    while (x == 0xFF) x = get8();
    return x;
  }

  // ---- the bit reader
  bool grow() {
    if (code_bits_ < 0) return fail_bits();
    do {
      unsigned b = nomore_ ? 0u : unsigned(get8());
      if (b == 0xFF) {
        int c = get8();
        while (c == 0xFF) c = get8();
        if (c != 0) {
          marker_ = c;
          nomore_ = true;
          return true;
        }
      }
      code_buffer_ |= b << (24 - code_bits_);
      code_bits_ += 8;
    } while (code_bits_ <= 24);
    return true;
  }
  bool fail_bits() {
    problem_ = "JPEG image data is corrupt: the scan at byte " + std::to_string(scan_at_) +
               " runs out of data inside its block " + std::to_string(block_) +
               " (a marker at byte " + std::to_string(pos_ >= 2 ? pos_ - 2 : 0) +
               " where the block still needs bits; stb_image would read past it)";
    return false;
  }
  bool take(int bits) {  // consumed `bits` that stb does not check it holds
    code_bits_ -= bits;
    return code_bits_ >= 0 || fail_bits();
  }
  static uint32_t rotl(uint32_t x, int k) { return k ? (x << k) | (x >> (32 - k)) : x; }
  static uint32_t mask(int k) { return k >= 32 ? 0xFFFFFFFFu : (uint32_t(1) << k) - 1; }
  // stbi__jpeg_huff_decode: the symbol, or -1 (stb then fails the file).
  int huff(const Huffman& h) {
    if (code_bits_ < 16 && !grow()) return -2;
    const int c = int(code_buffer_ >> (32 - kFastBits));
    const int k = h.fast[c];
    if (k < 255) {
      const int s = h.size[k];
      if (s > code_bits_) return -1;
      code_buffer_ <<= s;
      code_bits_ -= s;
      return h.values[k];
    }
    const uint32_t temp = code_buffer_ >> 16;
    int len = kFastBits + 1;
    while (len < 17 && temp >= h.maxcode[len]) ++len;
    if (len == 17 || len > code_bits_) return -1;
    const int id = int((code_buffer_ >> (32 - len)) & mask(len)) + h.delta[len];
    if (id < 0 || id > 255) return -1;
    code_bits_ -= len;
    code_buffer_ <<= len;
    return h.values[id];
  }
  // stbi__extend_receive and stbi__jpeg_get_bits; false when the data ran out.
  bool receive(int n, int& value) {
    if (code_bits_ < n && !grow()) return false;
    const uint32_t sign = code_buffer_ >> 31;
    uint32_t k = rotl(code_buffer_, n);
    code_buffer_ = k & ~mask(n);
    k &= mask(n);
    value = int(k) + (sign ? 0 : (n ? -int(mask(n)) : 0));
    return take(n);
  }
  bool bits(int n, int& value) {
    if (code_bits_ < n && !grow()) return false;
    uint32_t k = rotl(code_buffer_, n);
    code_buffer_ = k & ~mask(n);
    value = int(k & mask(n));
    return take(n);
  }
  bool bit(int& value) {
    if (code_bits_ < 1 && !grow()) return false;
    value = int(code_buffer_ >> 31);
    code_buffer_ <<= 1;
    return take(1);
  }

  // ---- marker segments
  bool segment(int m) {  // stbi__process_marker; false where stb fails
    if (m == 0xDD) {
      if (get16() != 4) return false;
      restart_interval_ = int(get16());
      return true;
    }
    if (m == 0xDB) {
      int left = int(get16()) - 2;
      while (left > 0) {
        const int q = get8(), p = q >> 4, t = q & 15;
        if (p > 1 || t > 3) return false;
        for (int i = 0; i < 64; ++i) {
          const unsigned v = p ? get16() : unsigned(get8());
          if (i == 0) dequant0_[t] = v;
        }
        left -= p ? 129 : 65;
      }
      return left == 0;
    }
    if (m == 0xC4) {
      int left = int(get16()) - 2;
      while (left > 0) {
        const int q = get8(), tc = q >> 4, th = q & 15;
        if (tc > 1 || th > 3) return false;
        int counts[16], total = 0;
        for (int& c : counts) total += (c = get8());
        left -= 17;
        if (total > 256) return false;  // jpeg_huffman_problem refuses these first
        Huffman& h = tc == 0 ? dc_[th] : ac_[th];
        if (!build(h, counts)) return false;
        for (int i = 0; i < total; ++i) h.values[i] = uint8_t(get8());
        if (tc == 1) build_fast_ac(fast_ac_[th], h);
        left -= total;
      }
      return left == 0;
    }
    if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE) {
      const unsigned len = get16();
      if (len < 2) return false;
      pos_ = std::min(n_, pos_ + (len - 2));
      return true;
    }
    return false;
  }
  static bool build(Huffman& h, const int* counts) {  // canonical codes, as stb numbers them
    int k = 0;
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < counts[i]; ++j) h.size[k++] = uint8_t(i + 1);
    h.size[k] = 0;
    uint32_t code = 0;
    k = 0;
    for (int j = 1; j <= 16; ++j) {
      h.delta[j] = k - int(code);
      if (h.size[k] == j) {
        while (h.size[k] == j) h.code[k++] = uint16_t(code++);
        if (code - 1 >= (1u << j)) return false;
      }
      h.maxcode[j] = code << (16 - j);
      code <<= 1;
    }
    h.maxcode[17] = 0xFFFFFFFFu;
    std::memset(h.fast, 255, sizeof(h.fast));
    for (int i = 0; i < k; ++i)
      if (h.size[i] <= kFastBits) {
        const int c = h.code[i] << (kFastBits - h.size[i]), m = 1 << (kFastBits - h.size[i]);
        for (int j = 0; j < m; ++j) h.fast[c + j] = uint8_t(i);
      }
    h.built = true;
    return true;
  }
  // stb's combined code + magnitude table for short AC codes: run, length, value.
  static void build_fast_ac(int16_t* fast_ac, const Huffman& h) {
    for (int i = 0; i < (1 << kFastBits); ++i) {
      fast_ac[i] = 0;
      const int f = h.fast[i];
      if (f == 255) continue;
      const int rs = h.values[f], run = (rs >> 4) & 15, magbits = rs & 15, len = h.size[f];
      if (magbits && len + magbits <= kFastBits) {
        int k = ((i << len) & ((1 << kFastBits) - 1)) >> (kFastBits - magbits);
        const int m = 1 << (magbits - 1);
        if (k < m) k += int((~0u << magbits) + 1);
        if (k >= -128 && k <= 127) fast_ac[i] = int16_t(k * 256 + run * 16 + len + magbits);
      }
    }
  }

  bool header() {  // stbi__decode_jpeg_header + stbi__process_frame_header
    if (marker_or_none() != 0xD8) return false;
    int m = marker_or_none();
    while (!(m == 0xC0 || m == 0xC1 || m == 0xC2)) {
      if (!segment(m)) return false;
      m = marker_or_none();
      while (m == kNone) {
        if (pos_ >= n_) return false;
        m = marker_or_none();
      }
    }
    progressive_ = m == 0xC2;
    const unsigned lf = get16();
    if (lf < 11 || get8() != 8) return false;
    height_ = get16();
    width_ = get16();
    ncomp_ = get8();
    if (height_ == 0 || width_ == 0 || (ncomp_ != 1 && ncomp_ != 3 && ncomp_ != 4) ||
        lf != unsigned(8 + 3 * ncomp_))
      return false;
    int hmax = 1, vmax = 1;
    for (int i = 0; i < ncomp_; ++i) {
      Component& c = comp_[i];
      c.id = get8();
      const int q = get8();
      c.h = q >> 4;
      c.v = q & 15;
      c.tq = get8();
      if (c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3) return false;
      hmax = std::max(hmax, c.h);
      vmax = std::max(vmax, c.v);
    }
    for (int i = 0; i < ncomp_; ++i)
      if (hmax % comp_[i].h || vmax % comp_[i].v) return false;
    mcu_x_ = (int64_t(width_) + hmax * 8 - 1) / (hmax * 8);
    mcu_y_ = (int64_t(height_) + vmax * 8 - 1) / (vmax * 8);
    for (int i = 0; i < ncomp_; ++i) {
      Component& c = comp_[i];
      c.x = (int64_t(width_) * c.h + hmax - 1) / hmax;
      c.y = (int64_t(height_) * c.v + vmax - 1) / vmax;
      c.coeff_w = mcu_x_ * c.h;
      // The caller's size checks bound this (at most 1024 pixels per byte of file).
      if (progressive_) c.nonzero.assign(size_t(c.coeff_w * mcu_y_ * c.v), 0);
    }
    return true;
  }

  bool scan_header() {  // stbi__process_scan_header; false where stb fails
    scan_at_ = pos_ >= 2 ? pos_ - 2 : 0;
    const unsigned ls = get16();
    scan_n_ = get8();
    if (scan_n_ < 1 || scan_n_ > 4 || scan_n_ > ncomp_ || ls != unsigned(6 + 2 * scan_n_))
      return false;
    for (int i = 0; i < scan_n_; ++i) {
      const int id = get8(), q = get8();
      int which = 0;
      while (which < ncomp_ && comp_[which].id != id) ++which;
      if (which == ncomp_) return false;
      comp_[which].hd = q >> 4;
      comp_[which].ha = q & 15;
      if (comp_[which].hd > 3 || comp_[which].ha > 3) return false;
      order_[i] = which;
    }
    ss_ = get8();
    se_ = get8();
    const int a = get8();
    ah_ = a >> 4;
    al_ = a & 15;
    if (progressive_) {
      if (ss_ > 63 || se_ > 63 || ss_ > se_ || ah_ > 13 || al_ > 13) return false;
    } else {
      if (ss_ != 0 || ah_ != 0 || al_ != 0) return false;
      se_ = 63;
    }
    return true;
  }

  void reset() {  // stbi__jpeg_reset
    code_bits_ = 0;
    code_buffer_ = 0;
    nomore_ = false;
    for (auto& c : comp_) c.dc_pred = 0;
    marker_ = kNone;
    todo_ = restart_interval_ ? restart_interval_ : 0x7fffffff;
    eob_run_ = 0;
  }

  // false when stb stops (its own error or ours); problem_ says which.
  bool entropy_data() {
    reset();
    block_ = 0;
    // After each MCU: a restart marker must follow an interval, else stb ends the scan.
    auto after_mcu = [&](bool& end) {
      end = false;
      if (--todo_ > 0) return true;
      if (code_bits_ < 24 && !grow()) return false;
      if (marker_ < 0xD0 || marker_ > 0xD7) {
        end = true;
        return true;
      }
      reset();
      return true;
    };
    bool end = false;
    if (scan_n_ == 1) {
      Component& c = comp_[order_[0]];
      const int64_t w = (c.x + 7) >> 3, h = (c.y + 7) >> 3;
      for (int64_t j = 0; j < h; ++j)
        for (int64_t i = 0; i < w; ++i) {
          if (!block(c, i, j, false) || !after_mcu(end)) return false;
          if (end) return true;
        }
      return true;
    }
    for (int64_t j = 0; j < mcu_y_; ++j)
      for (int64_t i = 0; i < mcu_x_; ++i) {
        for (int k = 0; k < scan_n_; ++k) {
          Component& c = comp_[order_[k]];
          for (int y = 0; y < c.v; ++y)
            for (int x = 0; x < c.h; ++x)
              if (!block(c, i * c.h + x, j * c.v + y, true)) return false;
        }
        if (!after_mcu(end)) return false;
        if (end) return true;
      }
    return true;
  }

  // Block (bx, by) of component c; stb decodes every block of an interleaved progressive
  // scan as a DC block (and fails there unless the scan is one).
  bool block(Component& c, int64_t bx, int64_t by, bool interleaved) {
    ++block_;
    if (!progressive_) return baseline_block(c);
    uint64_t& nz = c.nonzero[size_t(bx + by * c.coeff_w)];
    if (interleaved || ss_ == 0) {
      if (se_ != 0) return false;
      if (code_bits_ < 16 && !grow()) return false;
      if (ah_ != 0) {
        int b = 0;
        return bit(b);
      }
      nz = 0;  // stb clears the block before a first DC scan
      int diff = 0;
      if (!dc(c, diff)) return false;
      const int64_t v = c.dc_pred * (int64_t(1) << al_);
      if (v > INT32_MAX || v < INT32_MIN)
        return fail_dc(c, ", which times 2^Al = " + std::to_string(int64_t(1) << al_) + " is " +
                              std::to_string(v));
      if (int16_t(v) != 0) nz |= 1;
      return true;
    }
    return ah_ == 0 ? ac_first(c, nz) : ac_refine(c, nz);
  }
  bool fail_dc(const Component& c, const std::string& detail) {
    problem_ = "JPEG image data is corrupt: in the scan at byte " + std::to_string(scan_at_) +
               ", block " + std::to_string(block_) + " of component " + std::to_string(c.id) +
               " has a DC value of " + std::to_string(c.dc_pred) + detail +
               ", outside the int that stb_image computes it in";
    return false;
  }
  // The DC difference of a first DC scan or a baseline block, added to the prediction.
  bool dc(Component& c, int& diff) {
    if (!dc_[c.hd].built) return false;
    const int t = huff(dc_[c.hd]);
    if (t < 0 || t > 15) return false;
    diff = 0;
    if (t && !receive(t, diff)) return false;
    c.dc_pred += diff;
    if (c.dc_pred > INT32_MAX || c.dc_pred < INT32_MIN) return fail_dc(c, "");
    return true;
  }
  bool baseline_block(Component& c) {
    if (code_bits_ < 16 && !grow()) return false;
    int diff = 0;
    if (!dc(c, diff)) return false;
    const int64_t v = c.dc_pred * int64_t(dequant0_[c.tq]);
    if (v > INT32_MAX || v < INT32_MIN)
      return fail_dc(c, ", which times its quantiser " + std::to_string(dequant0_[c.tq]) + " is " +
                            std::to_string(v));
    if (!ac_[c.ha].built) return false;
    const Huffman& h = ac_[c.ha];
    const int16_t* fac = fast_ac_[c.ha];
    int k = 1;
    do {
      if (code_bits_ < 16 && !grow()) return false;
      const int r = fac[code_buffer_ >> (32 - kFastBits)];
      if (r) {
        k += ((r >> 4) & 15) + 1;
        if (!take(r & 15)) return false;
        code_buffer_ <<= (r & 15);
        continue;
      }
      const int rs = huff(h);
      if (rs < 0) return false;
      const int s = rs & 15, run = rs >> 4;
      if (s == 0) {
        if (rs != 0xF0) break;
        k += 16;
      } else {
        k += run + 1;
        int value = 0;
        if (!receive(s, value)) return false;
      }
    } while (k < 64);
    return true;
  }
  // The position stb writes coefficient k to (natural order); past 63 it writes 63.
  static int natural(int k) {
    static const uint8_t zz[64] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
                                   12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
                                   35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
                                   58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};
    return k < 64 ? zz[k] : 63;
  }
  static void set(uint64_t& nz, int pos, bool on) {
    nz = on ? nz | (uint64_t(1) << pos) : nz & ~(uint64_t(1) << pos);
  }
  bool ac_first(Component& c, uint64_t& nz) {
    if (eob_run_) {
      --eob_run_;
      return true;
    }
    if (!ac_[c.ha].built) return false;
    const Huffman& h = ac_[c.ha];
    const int16_t* fac = fast_ac_[c.ha];
    int k = ss_;
    do {
      if (code_bits_ < 16 && !grow()) return false;
      const int r = fac[code_buffer_ >> (32 - kFastBits)];
      if (r) {
        k += (r >> 4) & 15;
        if (!take(r & 15)) return false;
        code_buffer_ <<= (r & 15);
        set(nz, natural(k++), int16_t((r >> 8) * (1 << al_)) != 0);
        continue;
      }
      const int rs = huff(h);
      if (rs < 0) return false;
      const int s = rs & 15, run = rs >> 4;
      if (s == 0) {
        if (run < 15) {
          eob_run_ = 1 << run;
          int extra = 0;
          if (run && !bits(run, extra)) return false;
          eob_run_ += extra - 1;
          break;
        }
        k += 16;
      } else {
        k += run;
        int value = 0;
        if (!receive(s, value)) return false;
        set(nz, natural(k++), int16_t(value * (1 << al_)) != 0);
      }
    } while (k <= se_);
    return true;
  }
  bool ac_refine(Component& c, uint64_t& nz) {
    int b = 0;
    if (eob_run_) {
      --eob_run_;
      for (int k = ss_; k <= se_; ++k)
        if ((nz >> natural(k) & 1) && !bit(b)) return false;
      return true;
    }
    if (!ac_[c.ha].built) return false;
    int k = ss_;
    do {
      const int rs = huff(ac_[c.ha]);
      if (rs < 0) return false;
      int s = rs & 15, run = rs >> 4;
      if (s == 0) {
        if (run < 15) {
          eob_run_ = (1 << run) - 1;
          int extra = 0;
          if (run && !bits(run, extra)) return false;
          eob_run_ += extra;
          run = 64;
        }
      } else {
        if (s != 1) return false;
        if (!bit(b)) return false;
      }
      while (k <= se_) {
        const int p = natural(k++);
        if (nz >> p & 1) {
          if (!bit(b)) return false;
        } else {
          if (run == 0) {
            if (s) set(nz, p, true);
            break;
          }
          --run;
        }
      }
    } while (k <= se_);
    return true;
  }

  const unsigned char* b_;
  size_t n_, pos_ = 0;
  uint32_t code_buffer_ = 0;
  int code_bits_ = 0;
  bool nomore_ = false;
  int marker_ = kNone;
  int restart_interval_ = 0, todo_ = 0, eob_run_ = 0;
  bool progressive_ = false;
  unsigned width_ = 0, height_ = 0;
  int ncomp_ = 0, scan_n_ = 0, order_[4] = {}, ss_ = 0, se_ = 0, ah_ = 0, al_ = 0;
  int64_t mcu_x_ = 0, mcu_y_ = 0, block_ = 0;
  size_t scan_at_ = 0;
  Component comp_[4];
  Huffman dc_[4], ac_[4];
  int16_t fast_ac_[4][1 << kFastBits] = {};
  unsigned dequant0_[4] = {};
  int scans_ = 0;
  std::string problem_;
  bool reached_end_ = false;
};

// What stb_image's entropy decoding would do wrong on this JPEG (see above); empty when
// nothing, or when the data is not a JPEG.
inline std::string jpeg_entropy_problem(const unsigned char* b, size_t n) {
  return StbJpegReplay(b, n).run();
}

}  // namespace image_detail
}  // namespace minicnn
