// Reading and writing NumPy .npy files (format versions 1.0-3.0), C order only.
// Used for exact test inputs (uint8 images), feature output and golden fixtures.
// Every size in the header is checked against the file length before reading.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"

namespace minicnn {

struct NpyArray {
  std::string dtype;  // "f4", "f8", "u1", "i8", ...
  std::vector<int64_t> dims;
  std::vector<char> bytes;  // raw little-endian data, C order

  int64_t count() const {
    int64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
  Shape shape(const std::string& where) const {
    if (dims.size() > 4)
      throw FormatError(where + ": array has rank " + std::to_string(dims.size()) +
                        ", minicnn tensors have rank <= 4");
    return Shape::from_range(dims.begin(), dims.end());
  }
  // Converts any numeric dtype to the tensor's scalar type.
  template <typename T>
  Tensor<T> to_tensor(const std::string& where) const {
    Tensor<T> t(shape(where));
    int64_t n = count();
    auto conv = [&](auto tag) {
      using S = decltype(tag);
      for (int64_t i = 0; i < n; ++i) {
        S v;
        std::memcpy(&v, bytes.data() + i * sizeof(S), sizeof(S));
        t[i] = static_cast<T>(v);
      }
    };
    if (dtype == "f4")
      conv(float{});
    else if (dtype == "f8")
      conv(double{});
    else if (dtype == "u1")
      conv(uint8_t{});
    else if (dtype == "i1")
      conv(int8_t{});
    else if (dtype == "i4")
      conv(int32_t{});
    else if (dtype == "i8")
      conv(int64_t{});
    else
      throw FormatError(where + ": unsupported .npy dtype '" + dtype + "'");
    return t;
  }
};

namespace detail {
inline int npy_item_size(const std::string& d) {
  if (d.size() != 2) return 0;
  char k = d[0];
  int n = d[1] - '0';
  if ((k == 'f' && (n == 4 || n == 8)) ||
      ((k == 'u' || k == 'i') && (n == 1 || n == 2 || n == 4 || n == 8)))
    return n;
  return 0;
}
inline std::string npy_dict_value(const std::string& header, const std::string& key,
                                  const std::string& where) {
  auto k = header.find("'" + key + "'");
  if (k == std::string::npos) throw FormatError(where + ": .npy header lacks '" + key + "'");
  auto colon = header.find(':', k);
  if (colon == std::string::npos) throw FormatError(where + ": malformed .npy header");
  auto start = header.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos) throw FormatError(where + ": malformed .npy header");
  return header.substr(start);
}
}  // namespace detail

inline NpyArray parse_npy(const std::vector<char>& file, const std::string& where) {
  static const char magic[] = "\x93NUMPY";
  if (file.size() < 10 || std::memcmp(file.data(), magic, 6) != 0)
    throw FormatError(where + ": not a .npy file (bad magic)");
  int major = static_cast<unsigned char>(file[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(file[8]) | (static_cast<unsigned char>(file[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (file.size() < 12) throw FormatError(where + ": truncated .npy header");
    header_len = 0;
    for (int i = 0; i < 4; ++i)
      header_len |= size_t(static_cast<unsigned char>(file[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw FormatError(where + ": unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > file.size())
    throw FormatError(where + ": .npy header of " + std::to_string(header_len) +
                      " bytes runs past the end of the file (" + std::to_string(file.size()) +
                      " bytes)");
  std::string header(file.data() + offset, header_len);
  NpyArray a;
  std::string descr = detail::npy_dict_value(header, "descr", where);
  if (descr.size() < 5 || descr[0] != '\'')
    throw FormatError(where + ": malformed descr in .npy header");
  char order = descr[1];
  a.dtype = descr.substr(2, descr.find('\'', 2) - 2);
  int item = detail::npy_item_size(a.dtype);
  if (!item)
    throw FormatError(where + ": unsupported .npy dtype '" +
                      descr.substr(1, descr.find('\'', 1) - 1) + "'");
  if (order == '>' && item > 1) throw FormatError(where + ": big-endian .npy is not supported");
  if (detail::npy_dict_value(header, "fortran_order", where).rfind("False", 0) != 0)
    throw FormatError(where + ": Fortran-order .npy is not supported");
  std::string sh = detail::npy_dict_value(header, "shape", where);
  if (sh.empty() || sh[0] != '(') throw FormatError(where + ": malformed shape in .npy header");
  auto close = sh.find(')');
  if (close == std::string::npos) throw FormatError(where + ": malformed shape in .npy header");
  std::string inner = sh.substr(1, close - 1);
  size_t pos = 0;
  while (pos < inner.size()) {
    size_t next = inner.find(',', pos);
    std::string tok = inner.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    tok.erase(0, tok.find_first_not_of(' '));
    if (!tok.empty()) {
      char* endp = nullptr;
      long long v = std::strtoll(tok.c_str(), &endp, 10);
      if (v < 0 || endp == tok.c_str())
        throw FormatError(where + ": bad dimension '" + tok + "' in .npy header");
      a.dims.push_back(v);
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  size_t data_off = offset + header_len;
  // Guard against overflow before multiplying out the size.
  unsigned long long n = 1;
  for (auto d : a.dims) {
    if (d != 0 && n > (1ULL << 50) / static_cast<unsigned long long>(d))
      throw FormatError(where + ": .npy array is too large");
    n *= static_cast<unsigned long long>(d);
  }
  unsigned long long need = n * item;
  if (data_off + need > file.size())
    throw FormatError(where + ": .npy data needs " + std::to_string(need) +
                      " bytes but the file has " + std::to_string(file.size() - data_off) +
                      " after the header (truncated?)");
  a.bytes.assign(file.begin() + data_off, file.begin() + data_off + need);
  return a;
}

inline std::vector<char> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw IoError("cannot read '" + path + "': it is a directory, expected a file");
  errno = 0;
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw IoError("cannot open '" + path + "' for reading" +
                  (errno ? std::string(": ") + std::strerror(errno) : std::string()));
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  f.seekg(0, std::ios::beg);
  if (n < 0 || !f) throw IoError("cannot determine the size of '" + path + "'");
  std::vector<char> buf(static_cast<size_t>(n));
  if (n > 0 && !f.read(buf.data(), n))
    throw IoError("error while reading '" + path + "': got " + std::to_string(f.gcount()) + " of " +
                  std::to_string(n) + " bytes");
  return buf;
}

inline NpyArray load_npy(const std::string& path) {
  return parse_npy(read_file_bytes(path), "'" + path + "'");
}

template <typename T>
Tensor<T> load_npy_tensor(const std::string& path) {
  return load_npy(path).to_tensor<T>("'" + path + "'");
}

// Writes float32 (or float64 for double tensors) C-order data.
template <typename T>
void save_npy(const std::string& path, ConstView<T> t) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "save_npy writes f4/f8");
  std::string shape = "(";
  for (int i = 0; i < t.rank(); ++i)
    shape += std::to_string(t.shape()[i]) + (t.rank() == 1 || i + 1 < t.rank() ? ", " : "");
  if (t.rank() > 1) shape.resize(shape.size());
  shape += ")";
  std::string header = std::string("{'descr': '<") + (sizeof(T) == 4 ? "f4" : "f8") +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open '" + path + "' for writing");
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hl = static_cast<uint16_t>(header.size());
  char hlb[2] = {static_cast<char>(hl & 0xff), static_cast<char>(hl >> 8)};
  f.write(hlb, 2);
  f.write(header.data(), header.size());
  f.write(reinterpret_cast<const char*>(t.data()), sizeof(T) * t.size());
  if (!f) throw IoError("error while writing '" + path + "'");
}

}  // namespace minicnn
