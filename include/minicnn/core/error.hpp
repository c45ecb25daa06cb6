// Exceptions thrown at minicnn's API boundaries. Kernels never throw; layers,
// loaders and tools validate their inputs and throw one of these kinds with a
// message that says where, what was expected and what was found.
#pragma once
#include <stdexcept>
#include <string>

namespace minicnn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A tensor or layer received a shape it cannot work with.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// A file (weights, checkpoint, image, .npy) is malformed, truncated or of an unknown version.
class FormatError : public Error {
 public:
  using Error::Error;
};

// The operating system refused a read or a write.
class IoError : public Error {
 public:
  using Error::Error;
};

// An option or argument is invalid (unknown alpha, negative rate, ...).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A value became NaN or infinite where it must not.
class NumericError : public Error {
 public:
  using Error::Error;
};

}  // namespace minicnn
