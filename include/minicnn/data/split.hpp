// Training / validation splits of an ImageFolder, as index lists into it.
//   keras_validation_split: Keras' validation_split exactly: per class, in the folder's
//     sorted file order, the first int(v * n) files are validation (int() truncates the
//     double product, as Python does), the rest training.
//   random_split: stratified and seeded: per class a random int(v * n) files.
//   grouped_split: files whose names share a key (a regular expression on the file name:
//     the first capture group, or the whole match; no match: the file is its own group) stay
//     on one side, so near-duplicate burst photos cannot sit on both sides and inflate validation
//     accuracy. Groups are taken in a seeded random order and go to validation while no
//     class exceeds its int(v * n) quota; the counts reached are reported.
// The validation side is never augmented by the loader (the origin notebook augmented it,
// because Keras' generator does whatever it was built with).
#pragma once
#include <regex.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "folder.hpp"

namespace minicnn {

struct Split {
  std::vector<size_t> train, validation;  // indices into the ImageFolder, in its order
};

namespace split_detail {
inline void check_fraction(double v) {
  if (!(v > 0.0 && v < 1.0))
    throw ConfigError("validation_split must be strictly between 0 and 1, got " +
                      std::to_string(v));
}
// Indices of each class, in folder order.
inline std::vector<std::vector<size_t>> by_class(const ImageFolder& ds) {
  std::vector<std::vector<size_t>> out(ds.class_names.size());
  for (size_t i = 0; i < ds.size(); ++i) out[size_t(ds.labels[i])].push_back(i);
  return out;
}
inline size_t quota(double v, size_t n) {
  return static_cast<size_t>(v * static_cast<double>(n));
}
template <typename V>
void shuffle(V& v, KeyedRng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}
inline std::string basename(const std::string& path) {
  size_t s = path.find_last_of('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}
}  // namespace split_detail

inline Split keras_validation_split(const ImageFolder& ds, double v) {
  split_detail::check_fraction(v);
  Split s;
  for (const auto& idx : split_detail::by_class(ds)) {
    const size_t k = split_detail::quota(v, idx.size());
    s.validation.insert(s.validation.end(), idx.begin(), idx.begin() + k);
    s.train.insert(s.train.end(), idx.begin() + k, idx.end());
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.validation.begin(), s.validation.end());
  return s;
}

inline Split random_split(const ImageFolder& ds, double v, uint64_t seed) {
  split_detail::check_fraction(v);
  Split s;
  auto classes = split_detail::by_class(ds);
  for (size_t c = 0; c < classes.size(); ++c) {
    auto idx = classes[c];
    KeyedRng rng(seed, 0x5b117, c);
    split_detail::shuffle(idx, rng);
    const size_t k = split_detail::quota(v, idx.size());
    s.validation.insert(s.validation.end(), idx.begin(), idx.begin() + k);
    s.train.insert(s.train.end(), idx.begin() + k, idx.end());
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.validation.begin(), s.validation.end());
  return s;
}

// A POSIX extended regular expression (regex.h) for file names, with the Perl classes \d \w
// \s \D \W \S written as their bracket forms. (libstdc++'s <regex> draws GCC 12
// -Wmaybe-uninitialized warnings in sanitizer builds and is slow to compile.)
class FileNameRegex {
 public:
  explicit FileNameRegex(const std::string& pattern) : pattern_(pattern) {
    const std::string ere = translate(pattern);
    const int rc = ::regcomp(&re_, ere.c_str(), REG_EXTENDED);
    if (rc != 0) {
      char msg[256];
      ::regerror(rc, &re_, msg, sizeof msg);
      throw ConfigError("grouped split: '" + pattern + "' is not a valid regular expression (" +
                        msg + "); POSIX extended syntax, with \\d \\w \\s");
    }
  }
  ~FileNameRegex() { ::regfree(&re_); }
  FileNameRegex(const FileNameRegex&) = delete;
  FileNameRegex& operator=(const FileNameRegex&) = delete;

  // The first capture group of the first match, or the whole match; nullopt-like empty flag.
  bool key(const std::string& text, std::string& out) const {
    regmatch_t m[2];
    if (::regexec(&re_, text.c_str(), 2, m, 0) != 0) return false;
    const regmatch_t& g = (re_.re_nsub >= 1 && m[1].rm_so >= 0) ? m[1] : m[0];
    out = text.substr(size_t(g.rm_so), size_t(g.rm_eo - g.rm_so));
    return true;
  }
  const std::string& pattern() const { return pattern_; }

 private:
  static std::string translate(const std::string& p) {
    std::string out;
    bool in_bracket = false;
    for (size_t i = 0; i < p.size(); ++i) {
      const char c = p[i];
      if (c == '\\' && i + 1 < p.size()) {
        const char n = p[i + 1];
        const char* cls = n == 'd'   ? "0-9"
                          : n == 'w' ? "[:alnum:]_"
                          : n == 's' ? "[:space:]"
                                     : nullptr;
        const char* neg = n == 'D'   ? "0-9"
                          : n == 'W' ? "[:alnum:]_"
                          : n == 'S' ? "[:space:]"
                                     : nullptr;
        if (cls || neg) {
          out += in_bracket ? std::string(cls ? cls : neg)
                            : std::string(cls ? "[" : "[^") + (cls ? cls : neg) + "]";
          ++i;
          continue;
        }
        out += c;
        out += n;
        ++i;
        continue;
      }
      if (c == '[') in_bracket = true;
      if (c == ']') in_bracket = false;
      out += c;
    }
    return out;
  }
  std::string pattern_;
  regex_t re_{};
};

// The group key of a file name under `pattern` (see the top of this file).
inline std::string group_key(const std::string& file_name, const FileNameRegex& pattern) {
  std::string k;
  return pattern.key(file_name, k) ? k : file_name;
}

inline Split grouped_split(const ImageFolder& ds, double v, const std::string& pattern,
                           uint64_t seed) {
  split_detail::check_fraction(v);
  const FileNameRegex re(pattern);
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < ds.size(); ++i)
    groups[group_key(split_detail::basename(ds.files[i]), re)].push_back(i);
  std::vector<const std::vector<size_t>*> order;
  for (const auto& g : groups) order.push_back(&g.second);  // key order, then shuffled
  KeyedRng rng(seed, 0x6e0a9);
  split_detail::shuffle(order, rng);

  const auto counts = ds.class_counts();
  std::vector<size_t> quota(counts.size()), taken(counts.size(), 0);
  for (size_t c = 0; c < counts.size(); ++c) quota[c] = split_detail::quota(v, size_t(counts[c]));
  Split s;
  std::vector<size_t> need(counts.size());
  for (const auto* g : order) {
    std::fill(need.begin(), need.end(), 0);
    for (size_t i : *g) ++need[size_t(ds.labels[i])];
    bool fits = true;
    for (size_t c = 0; c < need.size(); ++c) fits = fits && taken[c] + need[c] <= quota[c];
    auto& side = fits ? s.validation : s.train;
    side.insert(side.end(), g->begin(), g->end());
    if (fits)
      for (size_t c = 0; c < need.size(); ++c) taken[c] += need[c];
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.validation.begin(), s.validation.end());
  return s;
}

// Number of groups `pattern` makes of the files of `ds` (to report a grouped split).
inline size_t count_groups(const ImageFolder& ds, const std::string& pattern) {
  const FileNameRegex re(pattern);
  std::set<std::string> keys;
  for (const auto& f : ds.files) keys.insert(group_key(split_detail::basename(f), re));
  return keys.size();
}

// Checks that a separate validation folder has exactly the training classes.
inline void check_same_classes(const ImageFolder& train, const std::string& val_dir) {
  auto val = list_class_folders(val_dir);
  if (val != train.class_names) {
    std::string a, b;
    for (const auto& c : train.class_names) a += " " + c;
    for (const auto& c : val) b += " " + c;
    throw ConfigError("validation folder '" + val_dir + "' has classes [" + b +
                      " ], expected the training classes [" + a + " ]");
  }
}

}  // namespace minicnn
