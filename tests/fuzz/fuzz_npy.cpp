// Fuzz target: the .npy reader (io/npy.hpp): header parsing, the size checks, and the
// conversion of every dtype to a float tensor. Any escape other than minicnn::Error, or a
// sanitizer report, is a finding.
#include <cstdint>
#include <vector>

#include <minicnn/io/npy.hpp>

using namespace minicnn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  try {
    const NpyArray a = parse_npy(bytes, "fuzz.npy");
    Tensor<float> t = a.to_tensor<float>("fuzz.npy");
    (void)t;
  } catch (const Error&) {
  }
  return 0;
}
