// The .mcnn container (docs/file-format.md is the specification): a 64-byte
// fixed header, UTF-8 JSON metadata, a binary tensor table and 64-byte aligned
// little-endian tensor data, with CRC-32 checksums over header+metadata+table
// and over the data. Weights, trained models and training checkpoints all use it.
//
// Reading never trusts the file: every length, offset, rank and size is checked
// against the file length (with overflow-safe arithmetic) before it is used, and
// every problem is a FormatError naming the file, what was expected and what was
// found. Writing is atomic: a temporary file in the target's directory is written,
// fsync'ed and renamed over the target, so a crash or a failed write never leaves
// a half-written file where a good one was.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"

namespace minicnn {

// Keep in step with project(VERSION) in CMakeLists.txt (a test checks it).
inline constexpr const char* kMcnnLibraryVersion = "0.1.0";

inline constexpr uint32_t kMcnnVersionMajor = 1;
inline constexpr uint32_t kMcnnVersionMinor = 0;
// PNG-style: \r\n and the final \n expose newline conversion, \x1a stops `type` on DOS.
inline constexpr char kMcnnMagic[8] = {'M', 'C', 'N', 'N', '\r', '\n', '\x1a', '\n'};
inline constexpr std::size_t kMcnnHeaderSize = 64;
inline constexpr std::size_t kMcnnAlignment = 64;
inline constexpr std::size_t kMcnnEntryFixedSize = 24;
inline constexpr std::size_t kMcnnMaxNameBytes = 1024;
inline constexpr int kMcnnMaxJsonDepth = 64;
// Caps a reader applies before allocating anything (docs/file-format.md, "Limits"): a
// MobileNetV2 checkpoint has under 1000 tensors and a few kB of metadata.
inline constexpr uint64_t kMcnnMaxTensors = 1u << 16;
inline constexpr uint64_t kMcnnMaxMetadataBytes = 16u << 20;

// Element type of a stored tensor (the code is what the table stores).
enum class DType : uint8_t { float32 = 1, int64 = 2, uint8 = 3 };
// What a tensor is for: `model` tensors are the network's parameters and BatchNormalization
// statistics (what load_weights reads); `training` tensors are optimizer slots, RNG state,
// history arrays of a checkpoint (load_weights ignores them).
enum class TensorKind : uint8_t { model = 0, training = 1 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::float32: return "float32";
    case DType::int64: return "int64";
    case DType::uint8: return "uint8";
  }
  return "?";
}
inline std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::float32: return 4;
    case DType::int64: return 8;
    case DType::uint8: return 1;
  }
  return 0;
}

// One named tensor. Exactly one of value / ivalue / bvalue holds the data, chosen by dtype.
struct McnnTensor {
  std::string name;
  DType dtype = DType::float32;
  TensorKind kind = TensorKind::model;
  Tensor<float> value;     // dtype float32
  Tensor<int64_t> ivalue;  // dtype int64
  Tensor<uint8_t> bvalue;  // dtype uint8

  McnnTensor() = default;
  McnnTensor(std::string n, Tensor<float> v, TensorKind k = TensorKind::model)
      : name(std::move(n)), dtype(DType::float32), kind(k), value(std::move(v)) {}
  McnnTensor(std::string n, Tensor<int64_t> v, TensorKind k = TensorKind::model)
      : name(std::move(n)), dtype(DType::int64), kind(k), ivalue(std::move(v)) {}
  McnnTensor(std::string n, Tensor<uint8_t> v, TensorKind k = TensorKind::model)
      : name(std::move(n)), dtype(DType::uint8), kind(k), bvalue(std::move(v)) {}

  const Shape& shape() const {
    switch (dtype) {
      case DType::int64: return ivalue.shape();
      case DType::uint8: return bvalue.shape();
      default: return value.shape();
    }
  }
  // Pointer to the raw elements (nullptr when the tensor has no storage).
  const void* raw() const {
    switch (dtype) {
      case DType::int64: return ivalue.data();
      case DType::uint8: return bvalue.data();
      default: return value.data();
    }
  }
  uint64_t byte_size() const { return static_cast<uint64_t>(shape().size()) * dtype_size(dtype); }
};

struct McnnFile {
  nlohmann::json metadata = nlohmann::json::object();
  std::vector<McnnTensor> tensors;  // in file order (model order for weights)
  std::string source;  // where it was read from (for messages); empty if built in memory

  const McnnTensor* find(const std::string& name) const {
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  McnnTensor* find(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  // Appends a tensor; names must be unique.
  McnnTensor& add(McnnTensor t) {
    if (find(t.name)) throw ConfigError("McnnFile: duplicate tensor name '" + t.name + "'");
    tensors.push_back(std::move(t));
    return tensors.back();
  }
  // Number of stored elements over tensors of one kind (the "params" of a weights file).
  int64_t count_values(TensorKind kind = TensorKind::model) const {
    int64_t n = 0;
    for (const auto& t : tensors)
      if (t.kind == kind) n += t.shape().size();
    return n;
  }
};

namespace detail {

// CRC-32 (IEEE 802.3, reflected 0xEDB88320; the one zlib and Python's zlib.crc32 compute),
// "slicing by 8": eight tables let one step consume 8 bytes, ~6x faster than a byte at a
// time, which matters because every checkpoint (21 MB for MobileNetV2) is checksummed.
// tables[0] is the classic byte table; tables[k][b] is the CRC of byte b followed by k zeros.
inline const std::array<std::array<uint32_t, 256>, 8>& crc32_tables() {
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xffu];
    return t;
  }();
  return tables;
}
// Chainable like zlib: crc32(crc32(0, a), b) == crc32(0, a ++ b).
inline uint32_t crc32(uint32_t crc, const void* data, std::size_t n) {
  const auto& t = crc32_tables();
  const auto* p = static_cast<const unsigned char*>(data);
  auto le32 = [](const unsigned char* q) {  // byte order independent of the host
    return uint32_t(q[0]) | uint32_t(q[1]) << 8 | uint32_t(q[2]) << 16 | uint32_t(q[3]) << 24;
  };
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const uint32_t a = crc ^ le32(p), b = le32(p + 4);
    crc = t[7][a & 0xffu] ^ t[6][(a >> 8) & 0xffu] ^ t[5][(a >> 16) & 0xffu] ^ t[4][a >> 24] ^
          t[3][b & 0xffu] ^ t[2][(b >> 8) & 0xffu] ^ t[1][(b >> 16) & 0xffu] ^ t[0][b >> 24];
  }
  for (; n > 0; --n, ++p) crc = t[0][(crc ^ *p) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

// Little-endian fixed-width integers, independent of the host's byte order.
template <typename U>
U load_le(const char* p) {
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i)
    v |= static_cast<U>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
template <typename U>
void store_le(char* p, U v) {
  for (std::size_t i = 0; i < sizeof(U); ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xffu);
}
template <typename U>
void append_le(std::vector<char>& out, U v) {
  char b[sizeof(U)];
  store_le(b, v);
  out.insert(out.end(), b, b + sizeof(U));
}

constexpr bool host_is_big_endian() {
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__)
  return __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;
#else
  return false;
#endif
}
// Copies `count` elements of `item` bytes, swapping each element on big-endian hosts.
inline void copy_le_elements(void* dst, const void* src, std::size_t count, std::size_t item) {
  if (count == 0) return;
  std::memcpy(dst, src, count * item);
  if constexpr (host_is_big_endian()) {
    auto* b = static_cast<unsigned char*>(dst);
    for (std::size_t i = 0; i < count; ++i) std::reverse(b + i * item, b + (i + 1) * item);
  }
}

inline uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

// Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF); NUL is rejected too.
inline bool valid_utf8_name(const std::string& s) {
  std::size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0)
      len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
      len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
      len = 4, cp = c & 0x07;
    else
      return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

// Nesting depth of a JSON text (brackets outside strings), so a hostile file cannot
// make the JSON parser or destructor recurse without bound.
inline int json_nesting_depth(const char* p, std::size_t n) {
  int depth = 0, worst = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < n; ++i) {
    char c = p[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}

inline std::string hex32(uint32_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x";
  for (int i = 7; i >= 0; --i) s += digits[(v >> (4 * i)) & 0xf];
  return s;
}

inline std::string errno_text(int e) {
  return std::system_category().message(e);
}

inline std::string shape_of(const std::vector<uint64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  if (dims.size() == 1) s += ",";
  return s + ")";
}

// Header field offsets (see docs/file-format.md).
enum : std::size_t {
  kOffMagic = 0,
  kOffMajor = 8,
  kOffMinor = 12,
  kOffMetaLen = 16,
  kOffTableLen = 24,
  kOffCount = 32,
  kOffDataOff = 40,
  kOffDataLen = 48,
  kOffDataCrc = 56,
  kOffHeaderCrc = 60,
};

// Recomputes both checksums of a serialized file in place, trusting its length fields.
// Tests use it to build files that are well-formed except for one deliberate defect.
inline void mcnn_fix_checksums(std::vector<char>& b) {
  if (b.size() < kMcnnHeaderSize) return;
  uint64_t meta = load_le<uint64_t>(b.data() + kOffMetaLen),
           table = load_le<uint64_t>(b.data() + kOffTableLen);
  uint64_t doff = load_le<uint64_t>(b.data() + kOffDataOff),
           dlen = load_le<uint64_t>(b.data() + kOffDataLen);
  if (doff <= b.size() && dlen <= b.size() - doff)
    store_le<uint32_t>(b.data() + kOffDataCrc, crc32(0, b.data() + doff, dlen));
  uint32_t h = crc32(0, b.data(), kOffHeaderCrc);
  if (meta <= b.size() && table <= b.size() && kMcnnHeaderSize + meta + table <= b.size())
    h = crc32(h, b.data() + kMcnnHeaderSize, meta + table);
  store_le<uint32_t>(b.data() + kOffHeaderCrc, h);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Serialization

// The exact bytes of a .mcnn file for `f`. Sets metadata "format" to this writer's format
// version and "library_version" to the version of the library writing it (tests pass another
// version to reproduce a file written by an older minicnn byte for byte).
inline std::vector<char> serialize_mcnn(const McnnFile& f,
                                        const std::string& library_version = kMcnnLibraryVersion) {
  using namespace detail;
  nlohmann::json meta = f.metadata.is_null() ? nlohmann::json::object() : f.metadata;
  if (!meta.is_object())
    throw ConfigError("write .mcnn: metadata must be a JSON object, got " +
                      std::string(meta.type_name()));
  meta["format"] =
      "mcnn " + std::to_string(kMcnnVersionMajor) + "." + std::to_string(kMcnnVersionMinor);
  meta["library_version"] = library_version;
  std::string text;
  try {
    text = meta.dump();  // compact, keys sorted: the same content always gives the same bytes
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("write .mcnn: metadata cannot be written as JSON: ") + e.what());
  }
  if (text.size() > kMcnnMaxMetadataBytes)
    throw ConfigError("write .mcnn: metadata of " + std::to_string(text.size()) +
                      " bytes is larger than the limit of " +
                      std::to_string(kMcnnMaxMetadataBytes) + " bytes, which readers reject");
  if (f.tensors.size() > kMcnnMaxTensors)
    throw ConfigError("write .mcnn: " + std::to_string(f.tensors.size()) +
                      " tensors, more than the limit of " + std::to_string(kMcnnMaxTensors) +
                      ", which readers reject");
  if (json_nesting_depth(text.data(), text.size()) > kMcnnMaxJsonDepth)
    throw ConfigError("write .mcnn: metadata nests deeper than " +
                      std::to_string(kMcnnMaxJsonDepth) + " levels, which readers reject");

  std::vector<char> table;
  std::vector<uint64_t> offsets;
  std::unordered_set<std::string> names;
  uint64_t data_len = 0;
  for (const auto& t : f.tensors) {
    if (t.name.empty() || t.name.size() > kMcnnMaxNameBytes || !valid_utf8_name(t.name))
      throw ConfigError("write .mcnn: tensor name '" + t.name + "' must be 1.." +
                        std::to_string(kMcnnMaxNameBytes) + " bytes of UTF-8 without NUL");
    if (!names.insert(t.name).second)
      throw ConfigError("write .mcnn: duplicate tensor name '" + t.name + "'");
    if (t.shape().size() > 0 && t.raw() == nullptr)
      throw ConfigError("write .mcnn: tensor '" + t.name + "' (" + dtype_name(t.dtype) +
                        ") has shape " + t.shape().str() + " but no data");
    uint64_t off = align_up(data_len, kMcnnAlignment);
    offsets.push_back(off);
    data_len = off + t.byte_size();
    append_le<uint16_t>(table, static_cast<uint16_t>(t.name.size()));
    table.push_back(static_cast<char>(t.dtype));
    table.push_back(static_cast<char>(t.shape().rank()));
    table.push_back(static_cast<char>(t.kind));
    table.insert(table.end(), 3, '\0');
    append_le<uint64_t>(table, off);
    append_le<uint64_t>(table, t.byte_size());
    for (int64_t d : t.shape()) append_le<uint64_t>(table, static_cast<uint64_t>(d));
    table.insert(table.end(), t.name.begin(), t.name.end());
  }

  uint64_t data_off = align_up(kMcnnHeaderSize + text.size() + table.size(), kMcnnAlignment);
  std::vector<char> out(data_off + data_len, '\0');
  std::memcpy(out.data(), kMcnnMagic, 8);
  store_le<uint32_t>(out.data() + kOffMajor, kMcnnVersionMajor);
  store_le<uint32_t>(out.data() + kOffMinor, kMcnnVersionMinor);
  store_le<uint64_t>(out.data() + kOffMetaLen, text.size());
  store_le<uint64_t>(out.data() + kOffTableLen, table.size());
  store_le<uint64_t>(out.data() + kOffCount, f.tensors.size());
  store_le<uint64_t>(out.data() + kOffDataOff, data_off);
  store_le<uint64_t>(out.data() + kOffDataLen, data_len);
  std::memcpy(out.data() + kMcnnHeaderSize, text.data(), text.size());
  if (!table.empty())
    std::memcpy(out.data() + kMcnnHeaderSize + text.size(), table.data(), table.size());
  for (std::size_t i = 0; i < f.tensors.size(); ++i) {
    const auto& t = f.tensors[i];
    copy_le_elements(out.data() + data_off + offsets[i], t.raw(),
                     static_cast<std::size_t>(t.shape().size()), dtype_size(t.dtype));
  }
  mcnn_fix_checksums(out);
  return out;
}

// ---------------------------------------------------------------------------------------
// Parsing

inline McnnFile parse_mcnn(const std::vector<char>& bytes, const std::string& where) {
  using namespace detail;
  const uint64_t size = bytes.size();
  const char* b = bytes.data();
  auto fail = [&](const std::string& what) -> FormatError {
    return FormatError(where + ": " + what);
  };

  if (size < 8 || std::memcmp(b, kMcnnMagic, 8) != 0) {
    static const char hdf5[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    if (size >= 8 && std::memcmp(b, hdf5, 8) == 0)
      throw fail("this is a Keras/HDF5 file, not .mcnn; convert it with tools/keras_h5_to_mcnn.py");
    if (size < 8 && (size == 0 || std::memcmp(b, kMcnnMagic, size) == 0))
      throw fail("truncated: " + std::to_string(size) + " bytes, a .mcnn header needs " +
                 std::to_string(kMcnnHeaderSize));
    if (size >= 4 && std::memcmp(b, "MCNN", 4) == 0)
      throw fail(
          "bad magic: starts with \"MCNN\" but bytes 4..7 are not \\r\\n\\x1a\\n "
          "(the file was probably copied in text mode, which converts line endings)");
    throw fail(
        "not a .mcnn file (bad magic: expected \"MCNN\\r\\n\\x1a\\n\" in the first 8 bytes)");
  }
  if (size < kMcnnHeaderSize)
    throw fail("truncated: " + std::to_string(size) + " bytes, a .mcnn header needs " +
               std::to_string(kMcnnHeaderSize));

  // The version decides the layout of everything after it, so it is checked before the checksum.
  uint32_t major = load_le<uint32_t>(b + kOffMajor), minor = load_le<uint32_t>(b + kOffMinor);
  if (major > kMcnnVersionMajor)
    throw fail("format version " + std::to_string(major) + "." + std::to_string(minor) +
               " is newer than this reader supports (" + std::to_string(kMcnnVersionMajor) +
               ".x); upgrade minicnn (or, if no newer minicnn wrote this file, it is corrupted)");
  if (major == 0)
    throw fail("invalid format version 0." + std::to_string(minor) + " (the header is corrupted)");

  const uint64_t meta_len = load_le<uint64_t>(b + kOffMetaLen),
                 table_len = load_le<uint64_t>(b + kOffTableLen);
  const uint64_t count = load_le<uint64_t>(b + kOffCount);
  const uint64_t data_off = load_le<uint64_t>(b + kOffDataOff),
                 data_len = load_le<uint64_t>(b + kOffDataLen);
  const uint64_t room = size - kMcnnHeaderSize;
  if (meta_len > room || table_len > room - meta_len)
    throw fail("truncated or corrupted: the header declares " + std::to_string(meta_len) +
               " bytes of metadata and " + std::to_string(table_len) +
               " bytes of tensor table after the 64-byte header, but the file has only " +
               std::to_string(size) + " bytes");
  if (meta_len > kMcnnMaxMetadataBytes)
    throw fail("metadata of " + std::to_string(meta_len) + " bytes is larger than the limit of " +
               std::to_string(kMcnnMaxMetadataBytes) + " bytes");
  const uint64_t table_off = kMcnnHeaderSize + meta_len, table_end = table_off + table_len;
  uint32_t stored_hcrc = load_le<uint32_t>(b + kOffHeaderCrc);
  uint32_t hcrc = crc32(crc32(0, b, kOffHeaderCrc), b + kMcnnHeaderSize, meta_len + table_len);
  if (hcrc != stored_hcrc)
    throw fail("header checksum mismatch (stored " + hex32(stored_hcrc) + ", computed " +
               hex32(hcrc) + "): the header, metadata or tensor table is corrupted");

  // From here on the header fields are what the writer wrote.
  if (data_off != align_up(table_end, kMcnnAlignment))
    throw fail("data section offset " + std::to_string(data_off) + " should be " +
               std::to_string(align_up(table_end, kMcnnAlignment)) +
               " (table end rounded up to 64)");
  if (data_off > size || data_len > size - data_off)
    throw fail("truncated: the data section should end at byte " +
               (data_off > std::numeric_limits<uint64_t>::max() - data_len
                    ? std::string("(overflow)")
                    : std::to_string(data_off + data_len)) +
               " but the file has " + std::to_string(size) + " bytes");
  if (data_off + data_len != size)
    throw fail("the file has " + std::to_string(size - data_off - data_len) +
               " unexpected bytes after the data section (expected size " +
               std::to_string(data_off + data_len) + ")");
  for (uint64_t i = table_end; i < data_off; ++i)
    if (b[i] != 0)
      throw fail("non-zero padding byte at offset " + std::to_string(i) +
                 " before the data section");

  // Metadata.
  McnnFile f;
  f.source = where;
  const char* meta_p = b + kMcnnHeaderSize;
  if (json_nesting_depth(meta_p, meta_len) > kMcnnMaxJsonDepth)
    throw fail("metadata JSON nests deeper than " + std::to_string(kMcnnMaxJsonDepth) + " levels");
  try {
    f.metadata = nlohmann::json::parse(meta_p, meta_p + meta_len);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("metadata is not valid UTF-8 JSON: ") + e.what());
  }
  if (!f.metadata.is_object())
    throw fail(std::string("metadata must be a JSON object, found ") + f.metadata.type_name());

  // Tensor table.
  if (count > table_len / (kMcnnEntryFixedSize + 1))
    throw fail("tensor count " + std::to_string(count) + " cannot fit in a table of " +
               std::to_string(table_len) + " bytes");
  if (count > kMcnnMaxTensors)
    throw fail("the header declares " + std::to_string(count) +
               " tensors, more than the limit of " + std::to_string(kMcnnMaxTensors));
  struct Entry {
    std::string name;
    DType dtype;
    TensorKind kind;
    std::vector<uint64_t> dims;
    uint64_t offset, nbytes;
  };
  std::vector<Entry> entries;
  entries.reserve(count);
  std::unordered_set<std::string> names;
  uint64_t pos = table_off;
  for (uint64_t i = 0; i < count; ++i) {
    std::string which = "tensor #" + std::to_string(i);
    if (table_end - pos < kMcnnEntryFixedSize)
      throw fail("tensor table ends inside the entry of " + which);
    const char* e = b + pos;
    Entry en;
    uint16_t name_len = load_le<uint16_t>(e);
    uint8_t dtype = static_cast<uint8_t>(e[2]), rank = static_cast<uint8_t>(e[3]),
            kind = static_cast<uint8_t>(e[4]);
    en.offset = load_le<uint64_t>(e + 8);
    en.nbytes = load_le<uint64_t>(e + 16);
    if (rank > Shape::kMaxRank)
      throw fail(which + " has rank " + std::to_string(rank) + ", expected at most " +
                 std::to_string(Shape::kMaxRank));
    if (name_len == 0 || name_len > kMcnnMaxNameBytes)
      throw fail(which + " has a name of " + std::to_string(name_len) + " bytes, expected 1.." +
                 std::to_string(kMcnnMaxNameBytes));
    if (table_end - pos - kMcnnEntryFixedSize < uint64_t(8) * rank + name_len)
      throw fail("tensor table ends inside the entry of " + which);
    for (int k = 0; k < rank; ++k)
      en.dims.push_back(load_le<uint64_t>(e + kMcnnEntryFixedSize + 8 * k));
    en.name.assign(e + kMcnnEntryFixedSize + 8 * rank, name_len);
    pos += kMcnnEntryFixedSize + uint64_t(8) * rank + name_len;
    if (!valid_utf8_name(en.name)) throw fail(which + " has a name that is not valid UTF-8");
    which = "tensor '" + en.name + "'";
    if (!names.insert(en.name).second)
      throw fail("tensor name '" + en.name + "' appears twice in the table");
    if (dtype < 1 || dtype > 3)
      throw fail(which + " has unknown dtype code " + std::to_string(dtype) +
                 " (known: 1 float32, 2 int64, 3 uint8)");
    en.dtype = static_cast<DType>(dtype);
    if (kind > 1)
      throw fail(which + " has unknown kind code " + std::to_string(kind) +
                 " (known: 0 model, 1 training)");
    en.kind = static_cast<TensorKind>(kind);
    // Overflow-safe element count: every partial product stays below 2^62 / item size.
    const uint64_t item = dtype_size(en.dtype), limit = (uint64_t(1) << 62) / item;
    uint64_t elems = 1;
    for (uint64_t d : en.dims) {
      if (d > limit || (d != 0 && elems > limit / d))
        throw fail(which + " has absurd shape " + shape_of(en.dims) + " (too many elements)");
      elems *= d;
    }
    if (en.nbytes != elems * item)
      throw fail(which + " declares " + std::to_string(en.nbytes) + " bytes, but shape " +
                 shape_of(en.dims) + " of " + dtype_name(en.dtype) + " needs " +
                 std::to_string(elems * item));
    if (en.offset % kMcnnAlignment != 0)
      throw fail(which + " starts at data offset " + std::to_string(en.offset) +
                 ", which is not a multiple of 64");
    if (en.offset > data_len || en.nbytes > data_len - en.offset)
      throw fail(which + " occupies data bytes [" + std::to_string(en.offset) + ", +" +
                 std::to_string(en.nbytes) + ") past the end of the data section (" +
                 std::to_string(data_len) + " bytes)");
    entries.push_back(std::move(en));
  }
  if (pos != table_end)
    throw fail("tensor table has " + std::to_string(table_end - pos) + " bytes left after " +
               std::to_string(count) + " entries");

  // No two tensors may share bytes.
  std::vector<const Entry*> by_off;
  for (const auto& e : entries)
    if (e.nbytes) by_off.push_back(&e);
  std::sort(by_off.begin(), by_off.end(),
            [](const Entry* a, const Entry* c) { return a->offset < c->offset; });
  for (std::size_t i = 1; i < by_off.size(); ++i)
    if (by_off[i - 1]->offset + by_off[i - 1]->nbytes > by_off[i]->offset)
      throw fail("tensors '" + by_off[i - 1]->name + "' and '" + by_off[i]->name +
                 "' overlap in the data section");

  uint32_t stored_dcrc = load_le<uint32_t>(b + kOffDataCrc);
  uint32_t dcrc = crc32(0, b + data_off, data_len);
  if (dcrc != stored_dcrc)
    throw fail("data checksum mismatch (stored " + hex32(stored_dcrc) + ", computed " +
               hex32(dcrc) + "): tensor data is corrupted");

  f.tensors.reserve(entries.size());
  for (auto& e : entries) {
    McnnTensor t;
    t.name = std::move(e.name);
    t.dtype = e.dtype;
    t.kind = e.kind;
    Shape s = Shape::from_range(e.dims.begin(), e.dims.end());
    const char* src = b + data_off + e.offset;
    std::size_t n = static_cast<std::size_t>(s.size());
    switch (t.dtype) {
      case DType::float32:
        t.value = Tensor<float>(s);
        copy_le_elements(t.value.data(), src, n, 4);
        break;
      case DType::int64:
        t.ivalue = Tensor<int64_t>(s);
        copy_le_elements(t.ivalue.data(), src, n, 8);
        break;
      case DType::uint8:
        t.bvalue = Tensor<uint8_t>(s);
        copy_le_elements(t.bvalue.data(), src, n, 1);
        break;
    }
    f.tensors.push_back(std::move(t));
  }
  return f;
}

inline McnnFile read_mcnn(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw IoError("cannot read '" + path + "': it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open '" + path + "' for reading: " + detail::errno_text(errno));
  in.seekg(0, std::ios::end);
  std::streamoff n = in.tellg();
  if (n < 0) throw IoError("cannot determine the size of '" + path + "'");
  in.seekg(0, std::ios::beg);
  std::vector<char> bytes(static_cast<std::size_t>(n));
  if (n > 0 && !in.read(bytes.data(), n)) throw IoError("error while reading '" + path + "'");
  return parse_mcnn(bytes, "'" + path + "'");
}

// ---------------------------------------------------------------------------------------
// Atomic write

// An atomic replacement of the file at `path`, in two steps. The constructor creates a
// temporary file in the same directory, so that a missing folder or a permission problem is
// reported at once; commit() writes the bytes, fsyncs, renames the temporary file over the
// target and fsyncs the directory. On any failure, or when destroyed without a commit, the
// temporary file is removed and the previous file at `path` (if any) is untouched; errors
// are IoError saying what failed. Movable, so that the commit can happen on another thread
// (io/background_writer.hpp).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    namespace fs = std::filesystem;
    fs::path target(path_);
    if (target.filename().empty()) throw ConfigError("write '" + path_ + "': not a file name");
    dir_ = (target.parent_path().empty() ? fs::path(".") : target.parent_path()).string();
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; fd_ < 0; ++attempt) {
      tmp_ = (fs::path(dir_) / ("." + target.filename().string() + ".tmp." +
                                std::to_string(::getpid()) + "." + std::to_string(counter++)))
                 .string();
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ < 0 && (errno != EEXIST || attempt > 100))
        throw IoError("cannot write '" + path_ + "': cannot create a temporary file in '" + dir_ +
                      "': " + detail::errno_text(errno));
    }
  }
  AtomicFile(AtomicFile&& o) noexcept
      : path_(std::move(o.path_)),
        dir_(std::move(o.dir_)),
        tmp_(std::move(o.tmp_)),
        fd_(std::exchange(o.fd_, -1)) {}
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { abandon(); }

  const std::string& path() const { return path_; }

  void commit(const char* data, std::size_t n) {
    if (fd_ < 0) throw Error("AtomicFile '" + path_ + "': already committed or abandoned");
    auto fail = [&](const std::string& step) {
      const int e = errno;
      abandon();
      return IoError("cannot write '" + path_ + "': " + step + ": " + detail::errno_text(e) +
                     " (the previous file, if any, is unchanged)");
    };
    // Keep the permissions of the file being replaced.
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && S_ISREG(st.st_mode))
      (void)::fchmod(fd_, st.st_mode & 07777);
    std::size_t done = 0;
    while (done < n) {
      ssize_t w = ::write(fd_, data + done, std::min<std::size_t>(n - done, std::size_t(1) << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw fail("write failed after " + std::to_string(done) + " of " + std::to_string(n) +
                   " bytes");
      }
      done += static_cast<std::size_t>(w);
    }
    if (::fsync(fd_) != 0) throw fail("fsync failed");
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) throw fail("close failed");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw fail("rename of the temporary file failed");
    tmp_.clear();
    // Make the rename itself durable; failure here cannot lose the old or the new file.
    int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  void abandon() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
  }
  std::string path_, dir_, tmp_;
  int fd_ = -1;
};

// Removes the temporary files that AtomicFile left next to `path` in processes that no longer
// run: a process killed during a write (SIGKILL, power loss) cannot clean up, and each such
// file can be as large as the target. Files of a live process (one writing `path` right now)
// are left alone; so are names that do not follow AtomicFile's ".NAME.tmp.PID.N" exactly.
// Returns how many were removed.
inline int remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  int removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // PID.N
    const std::size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || dot > 9 || dot + 1 == rest.size() ||
        rest.find_first_not_of("0123456789.") != std::string::npos ||
        rest.find('.', dot + 1) != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(rest.substr(0, dot)));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code rec;
    if (it->is_regular_file(rec) && fs::remove(it->path(), rec)) ++removed;
  }
  return removed;
}

// Writes `n` bytes to `path` atomically (see AtomicFile).
inline void write_file_atomic(const std::string& path, const char* data, std::size_t n) {
  AtomicFile(path).commit(data, n);
}

inline void write_mcnn(const std::string& path, const McnnFile& f) {
  std::vector<char> bytes = serialize_mcnn(f);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace minicnn
