// Downstream smoke test: the umbrella header compiles and a tensor works.
#include <minicnn/minicnn.hpp>

#include <cstdio>

int main() {
  minicnn::TensorF t(minicnn::Shape{1, 4, 4, 3}, 1.0f);
  std::printf("consumer ok: %s, %lld elements\n", t.shape().str().c_str(),
              static_cast<long long>(t.size()));
  return t.size() == 48 ? 0 : 1;
}
