// libFuzzer harness for the GGUF reader: parse arbitrary bytes, then exercise what a
// loader does with a parsed file (every typed getter, the tensor views, ModelConfig).
// Any llm::Error is a correct answer; a crash, a sanitizer report or any other
// exception escaping is a bug. Build and run: scripts/fuzz-gguf.sh.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/model.h"

namespace {

template <typename F>
void ignore_error(F&& f) {
  try {
    f();
  } catch (const llm::Error&) {
  }
}

// Reads every byte the parser claims belongs to a tensor, so that ASan sees any view
// that reaches outside the input (libFuzzer's input buffer is exactly `size` bytes).
uint8_t touch(const llm::GgufTensor& t) {
  uint8_t x = 0;
  for (size_t i = 0; i < t.bytes; i += 61) x ^= t.data[i];
  if (t.bytes) x ^= t.data[t.bytes - 1];
  return x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    llm::GgufFile f = llm::GgufFile::parse(data, size, "fuzz");
    volatile uint8_t sink = 0;
    for (const llm::GgufKV& kv : f.metadata()) {
      ignore_error([&] { (void)f.get_string(kv.key); });
      ignore_error([&] { (void)f.get_int(kv.key); });
      ignore_error([&] { (void)f.get_float(kv.key); });
      ignore_error([&] { (void)f.get_bool(kv.key); });
      ignore_error([&] { (void)f.get_string_array(kv.key); });
      ignore_error([&] { (void)f.get_float_array(kv.key); });
      ignore_error([&] { (void)f.get_int_array(kv.key); });
      for (std::string_view s : kv.value.arr_strings)
        if (!s.empty()) sink = sink ^ static_cast<uint8_t>(s.back());
    }
    for (const llm::GgufTensor& t : f.tensors()) {
      sink = sink ^ touch(t);
      if (f.tensor(t.name) == nullptr) __builtin_trap();
      (void)t.n_elements();
      (void)t.rows();
    }
    ignore_error([&] {
      llm::ModelConfig c = llm::ModelConfig::from_gguf(f);
      (void)c.q_dim();
      (void)c.kv_dim();
    });
  } catch (const llm::Error&) {
  }
  return 0;
}
