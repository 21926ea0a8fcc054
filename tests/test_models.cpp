// make-model, quantize and the independent python reference (scripts/ref_forward.py).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "engine/convert.h"
#include "engine/model.h"
#include "quant/quants.h"
#include "test_util.h"

using namespace llm;

namespace {

std::string read_all(const std::string& path) {
  return test::read_text(path);
}

// A temporary file path, removed when the test program exits (the models add up to
// ~200 MB per run).
std::string tmp(const std::string& name) {
  struct Files {
    std::set<std::string> paths;
    ~Files() {
      for (const std::string& p : paths) std::remove(p.c_str());
    }
  };
  static Files files;
  std::string p = test::temp_path(name);
  files.paths.insert(p);
  return p;
}

std::string make(const std::string& file, MakeModelOptions o) {
  std::string p = tmp(file);
  make_model(o, p);
  return p;
}

MakeModelOptions opts(const std::string& shape, FileType t, uint64_t seed = 1) {
  MakeModelOptions o;
  o.shape = shape;
  o.type = t;
  o.seed = seed;
  o.n_threads = 2;
  return o;
}

// Every tensor's bytes, by name.
std::map<std::string, std::string> tensor_data(const GgufFile& f) {
  std::map<std::string, std::string> m;
  for (const GgufTensor& t : f.tensors())
    m[t.name] = std::string(reinterpret_cast<const char*>(t.data), t.bytes);
  return m;
}

std::vector<float> dequant(const GgufTensor& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  const int64_t cols = t.shape[0];
  for (int64_t r = 0; r < t.rows(); ++r)
    dequantize_row(t.type, t.data + static_cast<size_t>(r) * row_bytes(t.type, cols),
                   out.data() + r * cols, cols);
  return out;
}

// The published hyperparameters (Hugging Face config.json of each model), written
// here independently of engine/make_model.cpp's table.
struct Expect {
  const char* shape;
  const char* arch;
  int vocab, embd, layers, heads, kv, ff, ctx;
  float base, eps;
  bool tied, bias;
  float rope_factor;  // 0: no rope_freqs.weight
};
const Expect kExpect[] = {
    {"llama-1b", "llama", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, true, false,
     32.0f},
    {"llama2-7b", "llama", 32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f, 1e-5f, false, false, 0},
    {"llama2-70b", "llama", 32000, 8192, 80, 64, 8, 28672, 4096, 10000.0f, 1e-5f, false, false, 0},
    {"llama3-8b", "llama", 128256, 4096, 32, 32, 8, 14336, 131072, 500000.0f, 1e-5f, false, false,
     8.0f},
    {"mistral-7b", "llama", 32768, 4096, 32, 32, 8, 14336, 32768, 1e6f, 1e-5f, false, false, 0},
    {"qwen2-0.5b", "qwen2", 151936, 896, 24, 14, 2, 4864, 32768, 1e6f, 1e-6f, true, true, 0},
    {"qwen2.5-7b", "qwen2", 152064, 3584, 28, 28, 4, 18944, 32768, 1e6f, 1e-6f, false, true, 0},
    {"tinyllama-1.1b", "llama", 32000, 2048, 22, 32, 4, 5632, 2048, 10000.0f, 1e-5f, false, false,
     0},
    {"tiny", "llama", 512, 256, 4, 8, 4, 768, 2048, 10000.0f, 1e-5f, false, false, 8.0f},
    {"tiny-qwen2", "qwen2", 512, 256, 4, 8, 2, 768, 4096, 1e6f, 1e-6f, true, true, 0},
};

// The type llama.cpp gives each tensor, restated for the tiny shapes (4 layers, rows of
// 256): the output (or a tied token_embd) gets q6_K below 8 bits; Q4_K_S widens attn_v of
// layers 0-3 to q5_K; the _M mixes give attn_v and ffn_down q6_K where use_more_bits(i, 4)
// holds (layers 2 and 3). `pure`: one type throughout.
DType expected_type(FileType ft, const GgufTensor& t, bool tied, bool pure = false) {
  if (t.shape.size() == 1) return DType::F32;
  const DType base = default_tensor_type(ft);
  if (pure) return base;
  switch (ft) {
    case FileType::F32:
    case FileType::F16:
    case FileType::BF16:
    case FileType::Q8_0:
      return base;
    default:
      break;
  }
  if (t.name == "output.weight" || (tied && t.name == "token_embd.weight")) return DType::Q6_K;
  const bool late = t.name.rfind("blk.2.", 0) == 0 || t.name.rfind("blk.3.", 0) == 0;
  const bool attn_v = t.name.find("attn_v.weight") != std::string::npos;
  const bool raised = attn_v || t.name.find("ffn_down") != std::string::npos;
  switch (ft) {
    case FileType::Q4_K_S:
      return attn_v ? DType::Q5_K : DType::Q4_K;
    case FileType::Q4_K_M:
      return late && raised ? DType::Q6_K : DType::Q4_K;
    case FileType::Q5_K_M:
      return late && raised ? DType::Q6_K : DType::Q5_K;
    default:
      return base;
  }
}

// Relative RMS error a quantized weight may have (N(0, s) values; generous bounds).
double max_rel_rms(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1e-3;
    case DType::BF16:
      return 5e-3;
    case DType::Q8_0:
      return 0.01;
    case DType::Q6_K:
      return 0.04;
    case DType::Q5_0:
    case DType::Q5_K:
      return 0.08;
    default:
      return 0.16;  // 4-bit
  }
}

std::string python_with_numpy() {
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    auto r = test::run_command(std::string(py) + " -c 'import numpy' 2>/dev/null");
    if (r.exit_code == 0) return py;
  }
  return "";
}

std::string ref_script() {
  return std::string(LLM_SOURCE_DIR) + "/scripts/ref_forward.py";
}

[[maybe_unused]] std::vector<float> read_f32(const std::string& path) {
  std::string s = read_all(path);
  std::vector<float> v(s.size() / 4);
  std::memcpy(v.data(), s.data(), v.size() * 4);
  return v;
}

}  // namespace

TEST_CASE("make-model: deterministic, seed-dependent, independent of threads and layer count") {
  const std::string a = read_all(make("det_a.gguf", opts("tiny", FileType::F16)));
  MakeModelOptions one_thread = opts("tiny", FileType::F16);
  one_thread.n_threads = 1;
  const std::string b = read_all(make("det_b.gguf", one_thread));
  CHECK(a.size() > 1000000);
  CHECK(a == b);
  const std::string c = read_all(make("det_c.gguf", opts("tiny", FileType::F16, 2)));
  CHECK(c.size() == a.size());
  CHECK(c != a);

  // Fewer layers: the same values for the layers that remain.
  MakeModelOptions two = opts("tiny", FileType::F16);
  two.n_layers = 2;
  GgufFile full = GgufFile::open(tmp("det_a.gguf"));
  GgufFile cut = GgufFile::open(make("det_two.gguf", two));
  CHECK(cut.get_int("llama.block_count") == 2);
  CHECK(cut.tensor("blk.2.attn_q.weight") == nullptr);
  auto fd = tensor_data(full);
  for (const auto& [name, bytes] : tensor_data(cut)) CHECK_MESSAGE(fd.at(name) == bytes, name);
}

TEST_CASE("make-model: weights have the intended scale") {
  struct Want {
    const char* name;
    double mean, sd;
  };
  // tiny: matrices N(0, 0.08), embedding N(0, 1), norms 1 + N(0, 0.1).
  const Want wants[] = {{"blk.0.attn_q.weight", 0, 0.08},
                        {"blk.3.ffn_down.weight", 0, 0.08},
                        {"token_embd.weight", 0, 1.0},
                        {"blk.1.attn_norm.weight", 1.0, 0.1}};
  GgufFile f = GgufFile::open(make("scale.gguf", opts("tiny", FileType::F32)));
  for (const Want& w : wants) {
    CAPTURE(w.name);
    std::vector<float> v = dequant(*f.tensor(w.name));
    double sum = 0, sq = 0, max_abs = 0;
    for (float x : v) sum += x;
    const double mean = sum / static_cast<double>(v.size());
    for (float x : v) {
      sq += (x - mean) * (x - mean);
      max_abs = std::max(max_abs, std::abs(x - w.mean));
    }
    const double sd = std::sqrt(sq / static_cast<double>(v.size()));
    CHECK(std::abs(mean - w.mean) < 4 * w.sd / std::sqrt(static_cast<double>(v.size())) + 1e-9);
    CHECK(sd == doctest::Approx(w.sd).epsilon(v.size() > 10000 ? 0.01 : 0.15));
    CHECK(max_abs < 3.47 * w.sd);  // the generator's bounded tails (4 uniforms)
    CHECK(max_abs > 2.0 * w.sd);
  }
}

TEST_CASE("make-model: every shape has the published hyperparameters and loads") {
  for (const Expect& e : kExpect) {
    CAPTURE(e.shape);
    MakeModelOptions o = opts(e.shape, FileType::Q4_K_M);
    o.data = false;  // a sparse file: the tensor table and 1-D tensors, no matrix data
    o.n_layers = 2;
    const std::string path = make(std::string(e.shape) + "_skel.gguf", o);
    auto m = Model::load(path);
    const ModelConfig& c = m->config;
    CHECK(c.arch_name == e.arch);
    CHECK(c.n_vocab == e.vocab);
    CHECK(c.n_embd == e.embd);
    CHECK(c.n_layer == 2);
    CHECK(c.n_head == e.heads);
    CHECK(c.n_head_kv == e.kv);
    CHECK(c.n_ff == e.ff);
    CHECK(c.n_ctx_train == e.ctx);
    CHECK(c.rope_freq_base == e.base);
    CHECK(c.rms_eps == e.eps);
    CHECK(c.tied_output == e.tied);
    CHECK(c.has_qkv_bias == e.bias);
    CHECK(c.head_dim == e.embd / e.heads);
    CHECK(c.rope_type == (std::string(e.arch) == "qwen2" ? RopeType::Neox : RopeType::Norm));
    CHECK(m->file.get_string("general.name").value_or("").find("synthetic") != std::string::npos);
    CHECK(m->file.get_int("general.file_type") == 15);
    CHECK(m->file.get_int("general.quantization_version") == 2);
    CHECK(m->file.get_string_array("tokenizer.ggml.tokens")->size() ==
          static_cast<size_t>(e.vocab));
    if (std::string(e.arch) == "llama") CHECK(m->file.get_int("llama.vocab_size") == e.vocab);
    const auto& rf = m->weights.rope_freq_factors;
    if (e.rope_factor > 0) {
      REQUIRE(rf.size() == static_cast<size_t>(c.head_dim / 2));
      CHECK(rf.front() == 1.0f);  // the fastest frequencies are not scaled
      CHECK(rf.back() == e.rope_factor);
      for (size_t i = 1; i < rf.size(); ++i) CHECK(rf[i] >= rf[i - 1]);
    } else {
      CHECK(rf.empty());
    }
    // Norms were written (the loader reads only 1-D data here), near 1.
    CHECK(std::abs(*static_cast<const float*>(m->weights.output_norm.data) - 1.0f) < 0.5f);
    // Sizes agree with the shape's parameter count (2 of its layers).
    const ModelShape& s = find_shape(e.shape);
    int64_t n = 0;
    for (const GgufTensor& t : m->file.tensors())
      if (t.name != "rope_freqs.weight") n += t.n_elements();
    ModelShape two = s;
    two.n_layer = 2;
    CHECK(n == two.n_params());
  }
}

TEST_CASE("make-model: Llama 3.1-style rope factors") {
  // Llama 3.2 1B: factor 32, base 500000, head_dim 64. Pair i has wavelength
  // 2 pi 500000^(i/32): below 8192/4 (i <= 14) it keeps its frequency, above 8192
  // (i >= 18) it is slowed 32x, and in between smoothly interpolated.
  auto f = llama3_rope_factors(32.0f, 500000.0f, 64);
  REQUIRE(f.size() == 32);
  for (int i = 0; i < 32; ++i) {
    CAPTURE(i);
    const double wavelen = 2 * M_PI * std::pow(500000.0, i / 32.0);
    const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
    const double want = i <= 14 ? 1.0 : i >= 18 ? 32.0 : 1.0 / ((1 - smooth) / 32.0 + smooth);
    CHECK(f[i] == doctest::Approx(want).epsilon(1e-4));
  }
  CHECK(f[16] > 1.5f);
  CHECK(f[16] < 30.0f);
}

TEST_CASE("make-model: a --vocab file's tokenizer is copied and sizes the embedding") {
  std::string v = test::shared_file("vocab/ggml-vocab-llama-spm.gguf");
  if (v.empty()) LLM_SKIP("../shared/vocab/ggml-vocab-llama-spm.gguf absent");
  MakeModelOptions o = opts("tiny", FileType::Q8_0);
  o.vocab_path = v;
  o.n_layers = 1;
  auto m = Model::load(make("vocab.gguf", o));
  GgufFile src = GgufFile::open(v);
  CHECK(m->config.n_vocab == 32000);
  CHECK(m->file.get_int("llama.vocab_size") == 32000);
  int copied = 0;
  for (const GgufKV& kv : src.metadata()) {
    if (kv.key.rfind("tokenizer.", 0) != 0) continue;
    const GgufValue* got = m->file.find(kv.key);
    REQUIRE_MESSAGE(got, kv.key);
    CHECK(got->type == kv.value.type);
    if (kv.value.type == GgufType::ARRAY && kv.value.arr_type == GgufType::STRING) {
      CHECK(got->arr_strings == kv.value.arr_strings);
    } else if (kv.value.type == GgufType::ARRAY) {
      REQUIRE(got->arr_count == kv.value.arr_count);
      if (kv.value.arr_type == GgufType::FLOAT32 || kv.value.arr_type == GgufType::FLOAT64)
        CHECK(m->file.get_float_array(kv.key) == src.get_float_array(kv.key));
      else
        CHECK(m->file.get_int_array(kv.key) == src.get_int_array(kv.key));
    } else {
      CHECK(got->str == kv.value.str);
      CHECK(got->u == kv.value.u);
    }
    ++copied;
  }
  CHECK(copied >= 5);
}

TEST_CASE("make-model: the synthetic vocabulary is a valid SPM vocabulary") {
  GgufFile f = GgufFile::open(make("synvocab.gguf", opts("tiny-qwen2", FileType::F16)));
  auto tokens = *f.get_string_array("tokenizer.ggml.tokens");
  auto types = *f.get_int_array("tokenizer.ggml.token_type");
  auto scores = *f.get_float_array("tokenizer.ggml.scores");
  REQUIRE(tokens.size() == 512);
  REQUIRE(types.size() == 512);
  REQUIRE(scores.size() == 512);
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  CHECK(tokens[*f.get_int("tokenizer.ggml.bos_token_id")] == "<s>");
  CHECK(tokens[*f.get_int("tokenizer.ggml.eos_token_id")] == "</s>");
  CHECK(tokens[*f.get_int("tokenizer.ggml.unknown_token_id")] == "<unk>");
  std::set<std::string_view> unique(tokens.begin(), tokens.end());
  CHECK(unique.size() == tokens.size());
  int bytes = 0;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == 6) {
      char want[8];
      std::snprintf(want, sizeof want, "<0x%02X>", bytes++);
      CHECK(tokens[i] == want);
    }
  CHECK(bytes == 256);
  CHECK(unique.count("\xe2\x96\x81"
                     "a") == 1);
}

TEST_CASE("quantize: an f32 model to every file type") {
  for (const char* shape : {"tiny", "tiny-qwen2"}) {
    const std::string src = make(std::string("src_") + shape + ".gguf", opts(shape, FileType::F32));
    GgufFile in = GgufFile::open(src);
    const bool tied = std::string(shape) == "tiny-qwen2";
    for (FileType ft : all_file_types()) {
      const std::string what = std::string(shape) + " " + file_type_name(ft);
      CAPTURE(what);
      const std::string out = tmp(std::string(shape) + "_" + file_type_name(ft) + ".gguf");
      QuantizeOptions q;
      q.type = ft;
      q.n_threads = 2;
      quantize_model(src, out, q);
      auto m = Model::load(out);
      CHECK(m->file.get_int("general.file_type") == gguf_file_type(ft));
      CHECK((m->file.find("general.quantization_version") != nullptr) == file_type_quantized(ft));
      CHECK(m->file.get_string("general.name") == in.get_string("general.name"));
      CHECK(m->file.get_string_array("tokenizer.ggml.tokens") ==
            in.get_string_array("tokenizer.ggml.tokens"));
      REQUIRE(m->file.tensors().size() == in.tensors().size());
      for (const GgufTensor& t : m->file.tensors()) {
        CAPTURE(t.name);
        CHECK(dtype_name(t.type) == std::string(dtype_name(expected_type(ft, t, tied))));
        // The values survive, each row in its place, within the type's error.
        std::vector<float> want = dequant(*in.tensor(t.name)), got = dequant(t);
        double err = 0, ref = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          err += (got[i] - want[i]) * (got[i] - want[i]);
          ref += want[i] * want[i];
        }
        CHECK(std::sqrt(err / ref) <= max_rel_rms(t.type));
      }
      // make-model of the same type generates the same f32 values and quantizes them the
      // same way: identical tensor data.
      if (std::string(shape) == "tiny") {
        GgufFile direct = GgufFile::open(
            make(std::string("direct_") + file_type_name(ft) + ".gguf", opts(shape, ft)));
        CHECK(tensor_data(direct) == tensor_data(m->file));
      }
    }
  }
}

TEST_CASE("quantize and make-model --pure: one matrix type throughout") {
  const std::string src = make("pure_src.gguf", opts("tiny-qwen2", FileType::F32));
  for (FileType ft : {FileType::Q4_0, FileType::Q4_K_M, FileType::Q5_K_M}) {
    const std::string what = file_type_name(ft);
    CAPTURE(what);
    QuantizeOptions q;
    q.type = ft;
    q.pure = true;
    const std::string out = tmp("pure_" + what + ".gguf");
    quantize_model(src, out, q);
    auto m = Model::load(out);
    for (const GgufTensor& t : m->file.tensors())
      CHECK(dtype_name(t.type) == std::string(dtype_name(expected_type(ft, t, true, true))));
    MakeModelOptions o = opts("tiny-qwen2", ft);
    o.pure = true;
    GgufFile direct = GgufFile::open(make("pure_direct_" + what + ".gguf", o));
    CHECK(tensor_data(direct) == tensor_data(m->file));
  }
}

TEST_CASE("quantize: refuses quantized input and overwriting the input") {
  const std::string q = make("refuse_q4.gguf", opts("tiny", FileType::Q4_0));
  QuantizeOptions o;
  o.type = FileType::Q8_0;
  CHECK_THROWS_WITH_AS(quantize_model(q, tmp("refuse_out.gguf"), o),
                       doctest::Contains("already quantized"), Error);
  const std::string f = make("refuse_f16.gguf", opts("tiny", FileType::F16));
  CHECK_THROWS_WITH_AS(quantize_model(f, f, o), doctest::Contains("is the input"), Error);
}

TEST_CASE("cli: make-model and quantize") {
  const std::string llm = test::llm_binary();
  auto list = test::run_command(llm + " make-model --list");
  CHECK(list.exit_code == 0);
  for (const ModelShape& s : model_shapes()) CHECK(list.out.find(s.name) != std::string::npos);
  CHECK(test::run_command(llm + " make-model --help").exit_code == 0);
  CHECK(test::run_command(llm + " quantize --help").exit_code == 0);

  auto bad = test::run_command(llm + " make-model --shape tiny --type q3_k -o /dev/null");
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("unknown --type 'q3_k'") != std::string::npos);
  auto bad_shape = test::run_command(llm + " make-model --shape llama9 -o /dev/null");
  CHECK(bad_shape.exit_code == 1);
  CHECK(bad_shape.err.find("llama2-7b") != std::string::npos);  // the list of known shapes

  const std::string f16 = tmp("cli_f16.gguf"), q = tmp("cli_q4km.gguf"),
                    f16b = tmp("cli_f16.2.gguf");
  auto made = test::run_command(
      llm + " make-model --shape tiny-qwen2 --type f16 --layers 2 --seed 7 -o " + f16);
  REQUIRE(made.exit_code == 0);
  CHECK(made.err.find("[  26/26] output_norm.weight") != std::string::npos);  // per-tensor progress
  auto quant = test::run_command(llm + " quantize " + f16 + " " + q + " Q4_K_M -t 2");
  REQUIRE(quant.exit_code == 0);
  CHECK(quant.err.find("blk.1.ffn_down.weight") != std::string::npos);
  CHECK(quant.err.find("f16  \u2192 q6_K") != std::string::npos);
  CHECK(quant.err.find("bits/weight") != std::string::npos);
  auto m = Model::load(q);
  CHECK(m->config.n_layer == 2);
  CHECK(m->weights.layers[0].wq.type == DType::Q4_K);
  auto again = test::run_command(llm + " quantize " + q + " " + f16b + " q8_0");
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("already quantized") != std::string::npos);
}

TEST_CASE("ref_forward.py reproduces the golden greedy run of stories260K") {
  const std::string py = python_with_numpy();
  if (py.empty()) LLM_SKIP("python3 with numpy not found (apt-get install python3-numpy)");
  const std::string model = test::shared_file("models/stories260K.gguf");
  const std::string ids_file = test::shared_file("models/stories260K.greedy200.ids");
  if (model.empty() || ids_file.empty()) LLM_SKIP("../shared/models/stories260K absent");
  std::vector<int> ids;
  {
    std::ifstream f(ids_file);
    for (int x; f >> x;) ids.push_back(x);
  }
  REQUIRE(ids.size() == 201);
  // Teacher forcing on the golden run: position i must predict the golden id i + 1.
  std::string toks;
  for (int i = 0; i < 200; ++i) toks += (i ? "," : "") + std::to_string(ids[i]);
  const std::string out = tmp("stories.argmax");
  auto r = test::run_command(py + " " + ref_script() + " " + model + " --tokens " + toks +
                             " --argmax " + out);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  std::ifstream f(out);
  int mismatches = 0;
  for (int i = 0; i < 200; ++i) {
    int a = -1;
    f >> a;
    mismatches += a != ids[i + 1];
  }
  CHECK(mismatches == 0);
}

#if __has_include("engine/backend_cpu.h")
#include "engine/backend.h"
#include "engine/batch.h"

TEST_CASE("CPU backend logits match ref_forward.py on tiny models of every type") {
  const std::string py = python_with_numpy();
  if (py.empty()) LLM_SKIP("python3 with numpy not found (apt-get install python3-numpy)");
  struct Case {
    const char* shape;
    FileType type;
    bool pure;
  };
  std::vector<Case> cases;
  for (FileType ft : all_file_types()) cases.push_back({"tiny", ft, false});
  cases.push_back({"tiny", FileType::Q4_K_M, true});  // q4_K output
  cases.push_back({"tiny-qwen2", FileType::F32, false});
  cases.push_back({"tiny-qwen2", FileType::Q4_K_M, false});
  constexpr int kTokens = 128;
  for (const Case& c : cases) {
    const std::string what =
        std::string(c.shape) + "_" + file_type_name(c.type) + (c.pure ? "_pure" : "");
    CAPTURE(what);
    MakeModelOptions o = opts(c.shape, c.type, 11);
    o.pure = c.pure;
    const std::string path = make("ref_" + what + ".gguf", o);
    auto model = Model::load(path);
    const int V = model->config.n_vocab;
    std::mt19937 rng(5);
    std::vector<int32_t> tokens = {1};
    while (static_cast<int>(tokens.size()) < kTokens)
      tokens.push_back(static_cast<int32_t>(rng() % V));

    std::string toks;
    for (int32_t t : tokens) toks += (toks.empty() ? "" : ",") + std::to_string(t);
    const std::string ref_file = tmp("ref_" + what + ".logits");
    auto r = test::run_command(py + " " + ref_script() + " " + path + " --tokens " + toks +
                               " --out " + ref_file);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const std::vector<float> ref = read_f32(ref_file);  // (kTokens, V)
    REQUIRE(ref.size() == static_cast<size_t>(kTokens) * V);

    BackendOptions bo;
    bo.n_threads = 2;
    bo.kv_tokens = 256;
    bo.verbose = false;
    auto be = make_cpu_backend(*model, bo);
    const int bs = be->block_size();
    std::vector<int32_t> blocks;
    for (int b = 0; b * bs < kTokens; ++b) blocks.push_back(b);
    Batch batch;
    batch.add_sequence(tokens.data(), kTokens, 0, blocks, bs, false);
    for (int i = 0; i < kTokens; ++i) batch.logit_rows.push_back(i);
    std::vector<float> got(ref.size());  // (kTokens, V)
    be->forward(batch, got.data());

    double sum = 0, sq = 0;
    for (float x : ref) sum += x;
    const double mean = sum / static_cast<double>(ref.size());
    for (float x : ref) sq += (x - mean) * (x - mean);
    const double spread = std::sqrt(sq / static_cast<double>(ref.size()));
    double max_diff = 0;
    int clear = 0, agree = 0;
    for (int i = 0; i < kTokens; ++i) {
      const float* a = &ref[static_cast<size_t>(i) * V];
      const float* b = &got[static_cast<size_t>(i) * V];
      int top = 0, second = -1, top_b = 0;
      for (int v = 0; v < V; ++v) {
        max_diff = std::max(max_diff, static_cast<double>(std::abs(a[v] - b[v])));
        if (a[v] > a[top]) top = v;
        if (b[v] > b[top_b]) top_b = v;
      }
      for (int v = 0; v < V; ++v)
        if (v != top && (second < 0 || a[v] > a[second])) second = v;
      if (a[top] - a[second] > 0.05 * spread) {
        ++clear;
        agree += top == top_b;
      }
    }
    MESSAGE(what << ": logits spread " << spread << ", max |diff| " << max_diff
                 << ", top-1 agrees at " << agree << "/" << clear << " clear positions");
    CHECK(max_diff < 1e-3 * spread);  // both dequantize the same bits; f32 vs f64 rounding only
    CHECK(clear > kTokens / 2);
    CHECK(agree == clear);
  }
}
#endif
