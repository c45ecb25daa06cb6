// Fuzz target: the .mcnn reader (io/format.hpp) and what reads a parsed file: weights by
// name (io/weights.hpp) and saved models and checkpoints rebuilt from their metadata JSON
// (models/saved_model.hpp, models/layer_config.hpp).
// Input: one mode byte, then the file. Mode bit 0 recomputes both CRC-32s first, so that
// mutations get past the checksums and reach the table, the metadata and the model config;
// bit 1 rebuilds the model described by the metadata. A file that parses must also survive
// a write and a second read unchanged.
// Anything but a minicnn::Error escaping (a std::exception from nlohmann::json, bad_alloc),
// or a sanitizer report, is a finding.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <minicnn/io/format.hpp>
#include <minicnn/io/weights.hpp>
#include <minicnn/models/saved_model.hpp>

using namespace minicnn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::vector<char> bytes(reinterpret_cast<const char*>(data) + 1,
                          reinterpret_cast<const char*>(data) + size);
  if (mode & 1) detail::mcnn_fix_checksums(bytes);
  McnnFile f;
  try {
    f = parse_mcnn(bytes, "fuzz.mcnn");
  } catch (const Error&) {
    return 0;
  }
  // Round trip: what was read writes and reads back to the same tensors.
  const std::vector<char> again = serialize_mcnn(f);
  const McnnFile g = parse_mcnn(again, "round trip");
  if (g.tensors.size() != f.tensors.size()) std::abort();
  for (size_t i = 0; i < f.tensors.size(); ++i)
    if (g.tensors[i].name != f.tensors[i].name || g.tensors[i].shape() != f.tensors[i].shape() ||
        g.tensors[i].byte_size() != f.tensors[i].byte_size() ||
        (f.tensors[i].byte_size() &&
         std::memcmp(g.tensors[i].raw(), f.tensors[i].raw(), f.tensors[i].byte_size()) != 0))
      std::abort();
  if (mode & 2) {
    try {
      LoadedNet net = load_model_file(std::move(f));
      (void)net;
    } catch (const Error&) {
    }
  }
  return 0;
}
