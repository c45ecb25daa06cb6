// Fuzz target: image decoding as the dataset loader does it (data/image.hpp, data/exif.hpp):
// the truncation and size checks, stb_image for every format it decodes (JPEG, PNG, BMP, GIF,
// TGA, PSD, PNM, HDR, PIC), the EXIF orientation tag and the transposition it asks for, and
// both resizes. Any escape other than minicnn::Error, or a sanitizer report, is a finding.
// Images above 4 megapixels are decoded only up to the header: the library accepts up to
// 100 megapixels, and decoding those under ASan would slow the fuzzer to a crawl without
// exercising other code.
#include <cstdint>
#include <vector>

#include <minicnn/data/exif.hpp>
#include <minicnn/data/image.hpp>

using namespace minicnn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  const int orient = jpeg_exif_orientation(bytes);
  if (orient < 1 || orient > 8) __builtin_trap();
  int w = 0, h = 0, c = 0;
  // The header check runs stb_image's header parsers, which the library guards first.
  if (size > 0 && size < (1u << 30) && image_detail::stb_input_problem(data, size).empty() &&
      stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c) &&
      int64_t(w) * h > (int64_t(1) << 22))
    return 0;
  try {
    Image img = decode_image_memory(bytes, "fuzz");
    img = apply_exif_orientation(img, orient);
    const int tw = 1 + (img.width * 7) % 13, th = 1 + (img.height * 5) % 11;
    Image a = resize_nearest(img, tw, th);
    Image b = resize_bilinear(img, th, tw);
    (void)a;
    (void)b;
  } catch (const Error&) {
  }
  return 0;
}
