// When a kernel writes its output with streaming (non-temporal) stores; used by the
// depthwise kernels (dwconv2d.hpp).
//
// A plain store first reads the line it overwrites (read for ownership). An output much
// larger than the L2 caches of the threads writing it is evicted before the next layer
// reads it, so that read is wasted traffic on kernels that are bound by memory traffic;
// streaming stores write whole lines around the caches instead. Below the threshold (every
// batch-1 inference output at 96x96, for example) the next layer reads the output from
// cache, so plain stores stay. Streaming needs whole, aligned 64-byte lines per store
// (AVX-512 vectors): half-line stores written at different times make the write-combining
// buffers flush partial lines (measured 6.5x slower with AVX2 on the depthwise kernels).
// The GEMM tiles behind Conv2D (gemm.hpp) do not stream: each tile stores its MR x NV
// vectors in one burst, more lines than the write-combining buffers hold, and streaming
// them measured 10% slower over the pointwise and stem shapes (up to 29% on 16->96 @48).
#pragma once
#include <cstdint>

namespace minicnn::kernels {

// About half the 2 MiB L2 of a core on the tuning machine: room for the inputs as well.
constexpr int64_t kStreamBytesPerThread = int64_t(1) << 20;

// Whether `bytes` of output written by `threads` threads are large enough to stream.
inline bool output_exceeds_caches(int64_t bytes, int threads) {
  return bytes > kStreamBytesPerThread * threads;
}

// Set on a thread (StreamOutputsScope) that writes one large output through many small
// serial kernel calls, a few images at a time (kernels/dwconv2d_bn_input.hpp): the
// kernels then stream those parts as they would the whole output.
inline bool& stream_outputs_override() {
  thread_local bool on = false;
  return on;
}
class StreamOutputsScope {
 public:
  explicit StreamOutputsScope(bool on) : saved_(stream_outputs_override()) {
    stream_outputs_override() = on || saved_;
  }
  ~StreamOutputsScope() { stream_outputs_override() = saved_; }
  StreamOutputsScope(const StreamOutputsScope&) = delete;
  StreamOutputsScope& operator=(const StreamOutputsScope&) = delete;

 private:
  bool saved_;
};

// Whether p is aligned to `bytes` (a power of two).
inline bool aligned_to(const void* p, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

}  // namespace minicnn::kernels
