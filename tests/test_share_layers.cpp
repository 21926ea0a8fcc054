// make-model --share-layers: tensor infos that share data (GgufWriter::add_tensor_alias),
// checked against a model whose layers are byte copies of layer 0 written the plain way.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "engine/backend.h"
#include "engine/convert.h"
#include "engine/model.h"
#include "quant/quants.h"
#include "test_util.h"
#include "tp_test_util.h"

using namespace llm;

namespace {

MakeModelOptions tiny(FileType t, bool share) {
  MakeModelOptions o;
  o.shape = "tiny";
  o.type = t;
  o.seed = 3;
  o.n_threads = 2;
  o.share_layers = share;
  return o;
}

std::string make(const std::string& name, const MakeModelOptions& o) {
  const std::string p = test::temp_path(name);
  make_model(o, p);
  return p;
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}

// "blk.3.attn_q.weight" -> {3, "attn_q.weight"}; {-1, name} outside the layers.
std::pair<int, std::string> split_name(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return {-1, name};
  const size_t dot = name.find('.', 4);
  return {std::stoi(name.substr(4, dot - 4)), name.substr(dot + 1)};
}

std::string bytes_of(const GgufTensor& t) {
  return std::string(reinterpret_cast<const char*>(t.data), t.bytes);
}

// A copy of `src` (metadata and tensors, every tensor with data of its own) in which
// every layer's tensors hold the bytes of layer 0's: what --share-layers should mean,
// written without aliases.
void write_layers_as_layer0(const std::string& src, const std::string& dst) {
  GgufFile f = GgufFile::open(src);
  GgufWriter w;
  for (const GgufKV& kv : f.metadata()) w.copy_value(kv.key, kv.value);
  std::vector<const GgufTensor*> data;  // (n_tensors) whose bytes each tensor gets
  for (const GgufTensor& t : f.tensors()) {
    w.add_tensor(t.name, t.type, t.shape);
    const auto [layer, suffix] = split_name(t.name);
    const GgufTensor* d = layer > 0 ? f.tensor("blk.0." + suffix) : &t;
    REQUIRE(d != nullptr);
    REQUIRE(d->bytes == t.bytes);
    data.push_back(d);
  }
  w.begin(dst);
  for (const GgufTensor* d : data) w.write_tensor_data(d->data, d->bytes);
  w.finish();
}

std::vector<float> logits_of(const std::string& path, const std::vector<int32_t>& toks) {
  auto m = Model::load(path);
  BackendOptions o;
  o.n_threads = 2;
  o.kv_tokens = 256;
  o.verbose = false;
  auto be = make_backend(*m, o);
  return test::teacher_forced(*be, toks, 5);
}

std::vector<float> dequant(const GgufTensor& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  const int64_t cols = t.shape[0];
  for (int64_t r = 0; r < t.rows(); ++r)
    dequantize_row(t.type, t.data + static_cast<size_t>(r) * row_bytes(t.type, cols),
                   out.data() + r * cols, cols);
  return out;
}

}  // namespace

TEST_CASE("GgufWriter: aliased tensor infos share an offset and read back the same data") {
  const std::string path = test::temp_path("alias.gguf");
  std::vector<float> a(64), c(32);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) + 0.5f;
  for (size_t i = 0; i < c.size(); ++i) c[i] = -static_cast<float>(i);
  {
    GgufWriter w;
    w.set_string("general.architecture", "none");
    w.add_tensor("a", DType::F32, {16, 4});
    w.add_tensor_alias("b", 0);
    w.add_tensor("c", DType::F32, {32});
    w.add_tensor_alias("d", 0);  // after another tensor with data
    w.add_tensor_alias("e", 2);  // trailing aliases
    w.begin(path);
    w.write_tensor_data(a.data(), a.size() * 4);
    w.write_tensor_part(c.data(), 64);  // the writer skips "b" and "d" itself
    w.write_tensor_part(c.data() + 16, 64);
    w.finish();
  }
  GgufFile f = GgufFile::open(path);
  REQUIRE(f.tensors().size() == 5);
  const GgufTensor &ta = *f.tensor("a"), &tb = *f.tensor("b"), &tc = *f.tensor("c"),
                   &td = *f.tensor("d"), &te = *f.tensor("e");
  CHECK(tb.offset == ta.offset);
  CHECK(td.offset == ta.offset);
  CHECK(te.offset == tc.offset);
  CHECK(tc.offset == 256);  // a's 256 bytes, then c: nothing stored for b
  CHECK(tb.shape == ta.shape);
  CHECK(tb.type == DType::F32);
  CHECK(te.shape == std::vector<int64_t>{32});
  CHECK(bytes_of(tb) == std::string(reinterpret_cast<const char*>(a.data()), a.size() * 4));
  CHECK(bytes_of(te) == std::string(reinterpret_cast<const char*>(c.data()), c.size() * 4));
  std::remove(path.c_str());
}

TEST_CASE("make-model --share-layers: every layer's tensors point at layer 0's data") {
  const std::string plain = make("plain_f16.gguf", tiny(FileType::F16, false));
  const std::string shared = make("shared_f16.gguf", tiny(FileType::F16, true));
  GgufFile p = GgufFile::open(plain), s = GgufFile::open(shared);
  REQUIRE(p.tensors().size() == s.tensors().size());
  const int n_layer = static_cast<int>(*s.get_int("llama.block_count"));
  REQUIRE(n_layer == 4);

  uint64_t later_layers = 0;  // padded bytes of layers 1.. in the plain file
  std::set<uint64_t> offsets;
  for (size_t i = 0; i < s.tensors().size(); ++i) {
    const GgufTensor& t = s.tensors()[i];
    const GgufTensor& pt = p.tensors()[i];
    CAPTURE(t.name);
    CHECK(t.name == pt.name);  // same table, same order
    CHECK(t.type == pt.type);
    CHECK(t.shape == pt.shape);
    offsets.insert(t.offset);
    const auto [layer, suffix] = split_name(t.name);
    if (layer > 0) {
      const GgufTensor& first = *s.tensor("blk.0." + suffix);
      CHECK(t.offset == first.offset);
      CHECK(t.data == first.data);
      later_layers += (pt.bytes + 31) / 32 * 32;
    } else {
      // Layer 0 and the rest keep the plain model's values (same seed).
      CHECK(bytes_of(t) == bytes_of(pt));
    }
  }
  // Distinct data: everything but layers 1..3.
  CHECK(offsets.size() == s.tensors().size() - static_cast<size_t>(n_layer - 1) * 9);
  // The file is smaller by exactly those layers' data, and model_file_bytes knows it.
  CHECK(file_size(plain) - file_size(shared) == later_layers);
  CHECK(model_file_bytes(tiny(FileType::F16, true)) ==
        model_file_bytes(tiny(FileType::F16, false)) - later_layers);
  // The loader binds every layer (to the shared bytes) and counts all of them as weights.
  auto ms = Model::load(shared), mp = Model::load(plain);
  CHECK(ms->weight_bytes() == mp->weight_bytes());
  REQUIRE(ms->weights.layers.size() == 4);
  CHECK(ms->weights.layers[3].w_down.data == ms->weights.layers[0].w_down.data);
  CHECK(ms->weights.layers[3].w_down.bytes == mp->weights.layers[3].w_down.bytes);
  // Still random weights, not zeros.
  const std::vector<float> q = dequant(*s.tensor("blk.2.attn_q.weight"));
  double sq = 0;
  for (float x : q) sq += static_cast<double>(x) * x;
  CHECK(std::sqrt(sq / static_cast<double>(q.size())) == doctest::Approx(0.08).epsilon(0.05));
}

TEST_CASE("make-model --share-layers: the logits of a model whose layers all equal layer 0") {
  const std::string plain = make("plain_f32.gguf", tiny(FileType::F32, false));
  const std::string shared = make("shared_f32.gguf", tiny(FileType::F32, true));
  const std::string copied = test::temp_path("copied_f32.gguf");
  write_layers_as_layer0(plain, copied);
  // The reference file really holds 4 copies.
  CHECK(file_size(copied) == file_size(plain));

  std::vector<int32_t> toks;
  for (int i = 0; i < 12; ++i) toks.push_back((i * 37 + 11) % 512);
  const std::vector<float> ls = logits_of(shared, toks), lc = logits_of(copied, toks),
                           lp = logits_of(plain, toks);
  REQUIRE(ls.size() == lc.size());
  CHECK(ls == lc);  // same bytes per layer, same backend: bit-identical
  // and the layers matter: the plain model (distinct layers) answers differently.
  CHECK(test::worst_rel(lp, lc, 512) > 0.1);

  // Tensor parallelism slices each layer of the shared file on its own (CPU ranks).
  auto m = Model::load(shared);
  BackendOptions o;
  o.n_threads = 2;
  o.kv_tokens = 256;
  o.verbose = false;
  o.tp = 2;
  auto tp = make_backend(*m, o);
  CHECK(test::worst_rel(test::teacher_forced(*tp, toks, 5), ls, 512) < 1e-4);
}

TEST_CASE("make-model --share-layers under a mix: one copy per tensor type") {
  // Q4_K_M gives attn_v and ffn_down of layers 2 and 3 of the tiny shape q6_K, the
  // others q4_K (tests/test_models.cpp): layers 1 share layer 0's q4_K data, layer 3
  // layer 2's q6_K data, which holds layer 0's values in q6_K.
  const std::string plain = make("plain_q4km.gguf", tiny(FileType::Q4_K_M, false));
  const std::string shared = make("shared_q4km.gguf", tiny(FileType::Q4_K_M, true));
  GgufFile p = GgufFile::open(plain), s = GgufFile::open(shared);
  for (const char* suffix : {"attn_v.weight", "ffn_down.weight"}) {
    CAPTURE(suffix);
    auto t = [&](const GgufFile& f, int l) {
      return *f.tensor("blk." + std::to_string(l) + "." + suffix);
    };
    for (int l = 0; l < 4; ++l) CHECK(t(s, l).type == t(p, l).type);
    CHECK(t(s, 0).type == DType::Q4_K);
    CHECK(t(s, 2).type == DType::Q6_K);
    CHECK(t(s, 1).offset == t(s, 0).offset);
    CHECK(t(s, 3).offset == t(s, 2).offset);
    CHECK(t(s, 2).offset != t(s, 0).offset);
    // Layer 2's q6_K holds layer 0's values: within q4_K's error of layer 0's q4_K.
    const std::vector<float> a = dequant(t(s, 0)), b = dequant(t(s, 2)), c = dequant(t(p, 2));
    double d_same = 0, d_other = 0, n = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      d_same += (a[i] - b[i]) * (a[i] - b[i]);
      d_other += (a[i] - c[i]) * (a[i] - c[i]);
      n += static_cast<double>(b[i]) * b[i];
    }
    CHECK(std::sqrt(d_same / n) < 0.16);  // quantization error only
    CHECK(std::sqrt(d_other / n) > 1.0);  // independent values: ~sqrt(2)
  }
  auto m = Model::load(shared);
  CHECK(m->weights.layers[3].w_down.type == DType::Q6_K);
}

TEST_CASE("cli: make-model --share-layers and llm info") {
  const std::string path = test::temp_path("cli_shared.gguf");
  auto r = test::run_command(test::llm_binary() + " make-model --shape tiny --type f16 " +
                             "--share-layers -t 2 -o " + path);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find("= data of blk.0.ffn_down.weight") != std::string::npos);
  CHECK(r.err.find("stored: every layer shares layer 0's data") != std::string::npos);
  auto info = test::run_command(test::llm_binary() + " info -m " + path);
  REQUIRE_MESSAGE(info.exit_code == 0, info.err);
  CHECK(info.out.find("shared data:     27 tensors point at other tensors' data") !=
        std::string::npos);
  auto help = test::run_command(test::llm_binary() + " make-model --help");
  CHECK(help.out.find("--share-layers") != std::string::npos);
  std::remove(path.c_str());
}
