// Tensor parallelism on CUDA ranks through NCCL (cuda/nccl, cuda/backend_tp_cuda).
// One GPU: the NCCL path with one rank must give the plain CUDA backend's logits and
// greedy run (its all-reduce is the identity). Two or more GPUs: TP 2 against TP 1 on
// synthetic F16 and Q4_0 models — teacher-forced logits relative to their spread, the
// top-1 where the margin is clear, greedy 64 tokens — with and without CUDA graphs, a
// two-sequence batch, and block copies. Skips (77) without a device or without NCCL.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "cuda/backend_cuda.h"
#include "cuda/nccl.h"
#include "cuda/tp_sum.h"
#include "cuda_test_util.h"
#include "engine/backend_tp.h"
#include "engine/error.h"
#include "test_util.h"
#include "tp_test_util.h"

using namespace llm;
using namespace llm::test;

namespace {

const bool kHaveDevice = require_cuda_device();

// Exits with 77 when libnccl cannot be loaded: nothing here can run without it.
const bool kHaveNccl = [] {
  try {
    const auto nccl = cuda::load_nccl();
    std::fprintf(stderr, "NCCL %d from %s\n", nccl->version, nccl->path.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "skipped: %s\n", e.what());
    std::exit(77);
  }
  return true;
}();

BackendOptions gpu_opt(int tp) {
  BackendOptions o;
  o.device = DeviceKind::Cuda;
  o.kv_tokens = 2048;
  o.block_size = 16;
  o.verbose = false;
  o.tp = tp;
  return o;
}

struct Model2 {
  const char* what;
  std::string path;
};

const std::vector<Model2>& models() {
  static const std::vector<Model2> m = {{"tiny f16", synthetic("tiny", FileType::F16)},
                                        {"tiny q4_0", synthetic("tiny", FileType::Q4_0)}};
  return m;
}

// Top-1 disagreements of `got` with `ref` at positions where ref's best logit leads the
// second by more than `margin` times the logits' spread (near-ties of random weights may
// legitimately flip between two summation orders).
int clear_top1_mismatches(const std::vector<float>& got, const std::vector<float>& ref, int V,
                          double margin) {
  int bad = 0;
  for (size_t p = 0; p < ref.size() / static_cast<size_t>(V); ++p) {
    const float* r = ref.data() + p * V;
    std::vector<float> s(r, r + V);
    std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
    double mean = 0, var = 0;
    for (int i = 0; i < V; ++i) mean += r[i];
    mean /= V;
    for (int i = 0; i < V; ++i) var += (r[i] - mean) * (r[i] - mean);
    const double spread = std::sqrt(var / V);
    if (s[0] - s[1] > margin * spread && argmax(got.data() + p * V, V) != argmax(r, V)) ++bad;
  }
  return bad;
}

}  // namespace

TEST_CASE("cuda tp: one rank through NCCL equals the plain CUDA backend") {
  for (const Model2& c : models()) {
    CAPTURE(c.what);
    auto m = Model::load(c.path);
    const int V = m->config.n_vocab;
    const auto toks = prompt_tokens(V, 40);
    std::vector<float> ref;
    std::vector<int32_t> ref_greedy;
    {
      auto plain = make_cuda_backend(*m, gpu_opt(1));
      ref = teacher_forced(*plain, toks, 24);
      ref_greedy = greedy(*plain, prompt_tokens(V, 5), 64);
    }
    auto tp = make_cuda_tp_backend(*m, gpu_opt(1));
    CHECK(tp->name().rfind("tp 1 [cuda:0", 0) == 0);
    // Decode steps replay graphs with the (one-rank) ncclAllReduce captured in them.
    CHECK(worst_rel(teacher_forced(*tp, toks, 24), ref, V) < 1e-6);
    CHECK(greedy(*tp, prompt_tokens(V, 5), 64) == ref_greedy);
  }
}

TEST_CASE("cuda tp: errors name the missing devices and bad splits") {
  auto m = Model::load(models()[0].path);
  const int n = cuda_device_count();
  const std::string want =
      "--tp " + std::to_string(n + 1) + " needs " + std::to_string(n + 1) + " CUDA devices";
  if ((m->config.n_head % (n + 1)) == 0 && (m->config.n_head_kv % (n + 1)) == 0) {
    try {
      make_cuda_tp_backend(*m, gpu_opt(n + 1));
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(want) == 0);
    }
  }
  CHECK_THROWS_WITH_AS(make_cuda_tp_backend(*m, gpu_opt(3)), doctest::Contains("attention heads"),
                       Error);
}

TEST_CASE("cuda tp: two GPUs give the one-GPU logits and greedy runs") {
  if (cuda_device_count() < 2)
    LLM_SKIP("needs 2 CUDA devices, found " + std::to_string(cuda_device_count()));
  for (const Model2& c : models()) {
    CAPTURE(c.what);
    auto m = Model::load(c.path);
    const int V = m->config.n_vocab;
    const auto toks = prompt_tokens(V, 40);
    std::vector<float> ref;
    std::vector<int32_t> ref_greedy;
    {
      auto one = make_cuda_backend(*m, gpu_opt(1));
      ref = teacher_forced(*one, toks, 24);
      ref_greedy = greedy(*one, prompt_tokens(V, 5), 64);
    }
    auto be = make_backend(*m, gpu_opt(2));
    auto& tp = dynamic_cast<TpBackend&>(*be);
    CHECK(tp.world() == 2);
    CHECK(tp.name().find("cuda:1") != std::string::npos);
    const auto got = teacher_forced(tp, toks, 24);
    const double err = worst_rel(got, ref, V);
    MESSAGE(std::string(c.what) << ": tp 2 vs tp 1 worst logit error / spread " << err);
    CHECK(err < 2e-2);
    CHECK(clear_top1_mismatches(got, ref, V, 0.05) == 0);
    CHECK(greedy(tp, prompt_tokens(V, 5), 64) == ref_greedy);

    // Without graphs the same steps give the same logits as with them.
    for (int r = 0; r < 2; ++r) dynamic_cast<cuda::CudaBackend&>(tp.rank(r)).set_graphs(false);
    CHECK(worst_rel(teacher_forced(tp, toks, 24), got, V) < 1e-5);
    for (int r = 0; r < 2; ++r) dynamic_cast<cuda::CudaBackend&>(tp.rank(r)).set_graphs(true);

    // NCCL >= 2.27 all-reduces the residual stream in a symmetric window (its low-latency
    // kernels); LLM_NCCL_SYMMETRIC=0 keeps ordinary memory. A sum of two f32 terms is the
    // same in either order, so both give the same bits.
    // A tp 2 backend made with the switch `env` set to 0.
    auto without = [&](const char* env) {
      setenv(env, "0", 1);
      auto b = make_backend(*m, gpu_opt(2));
      unsetenv(env);
      return b;
    };
    if (cuda::load_nccl()->version >= 22700) {
      for (int r = 0; r < 2; ++r)
        CHECK(dynamic_cast<cuda::CudaBackend&>(tp.rank(r)).residual_in_fast_buffer());
      auto plain = without("LLM_NCCL_SYMMETRIC");
      auto& ptp = dynamic_cast<TpBackend&>(*plain);
      CHECK_FALSE(dynamic_cast<cuda::CudaBackend&>(ptp.rank(0)).residual_in_fast_buffer());
      CHECK(worst_rel(teacher_forced(ptp, toks, 24), got, V) < 1e-6);
    }

    // Where this build has NCCL's device API and the loaded NCCL is its version, one- and
    // two-row steps sum the ranks' parts inside the next RMSNorm instead of all-reducing
    // (teacher_forced's decode steps above); LLM_TP_FUSED=0 all-reduces them: the same
    // sums in the same order, (h + S0) + S1.
    if (cuda::tp_sum_built() && cuda::load_nccl()->version == cuda::tp_sum_nccl_version()) {
      for (int r = 0; r < 2; ++r)
        CHECK(dynamic_cast<cuda::CudaBackend&>(tp.rank(r)).sums_in_norm());
      auto plain = without("LLM_TP_FUSED");
      auto& ptp = dynamic_cast<TpBackend&>(*plain);
      CHECK_FALSE(dynamic_cast<cuda::CudaBackend&>(ptp.rank(0)).sums_in_norm());
      const double d = worst_rel(teacher_forced(ptp, toks, 24), got, V);
      MESSAGE(std::string(c.what) << ": sums in the norm vs all-reduce, worst difference " << d);
      CHECK(d < 1e-6);
      CHECK(greedy(ptp, prompt_tokens(V, 5), 64) == ref_greedy);
    } else {
      MESSAGE(
          "the residual sum inside the RMSNorm is not available here (NCCL device API "
          "headers of the loaded version): all-reduce only");
    }

    // A copied block serves a sequence that continues from it on every rank.
    const auto prefix = prompt_tokens(V, 16);  // exactly block 3 in teacher_forced
    auto one = make_cuda_backend(*m, gpu_opt(1));
    for (Backend* b : {static_cast<Backend*>(one.get()), static_cast<Backend*>(&tp)}) {
      teacher_forced(*b, prefix, 16);  // writes block 3
      b->copy_kv_block(3, 40);
    }
    std::vector<float> l1(static_cast<size_t>(V)), l2(static_cast<size_t>(V));
    Batch b;
    const int32_t tok = 7;
    b.add_sequence(&tok, 1, 16, {40, 41}, 16, true);
    one->forward(b, l1.data());
    tp.forward(b, l2.data());
    CHECK(worst_rel(l2, l1, V) < 2e-2);
    CHECK(tp.kv_blocks() <= one->kv_blocks());
  }
}
