// llm make-model: a synthetic GGUF of a real model's shape, for benchmarks and tests.
#include <cstdio>
#include <thread>

#include "engine/convert.h"
#include "server/args.h"
#include "server/cli.h"

namespace llm {

namespace {

void list_shapes() {
  std::printf("%-15s %-22s %7s %6s %6s %6s %6s %7s %8s %10s %10s\n", "shape", "model", "params",
              "dim", "layers", "heads", "kv", "ff", "vocab", "f16", "q4_k_m");
  for (const ModelShape& s : model_shapes()) {
    MakeModelOptions o;
    o.shape = s.name;
    o.type = FileType::F16;
    const double f16 = static_cast<double>(model_file_bytes(o));
    o.type = FileType::Q4_K_M;
    const double q4 = static_cast<double>(model_file_bytes(o));
    char params[16];
    const double p = static_cast<double>(s.n_params());
    std::snprintf(params, sizeof params, p >= 1e9 ? "%.2fB" : "%.1fM",
                  p >= 1e9 ? p / 1e9 : p / 1e6);
    std::printf("%-15s %-22s %7s %6d %6d %6d %6d %7d %8d %8.2f GB %8.2f GB\n", s.name,
                s.description, params, s.n_embd, s.n_layer, s.n_head, s.n_head_kv, s.n_ff,
                s.n_vocab, f16 / 1e9, q4 / 1e9);
  }
}

}  // namespace

int cmd_make_model(int argc, char** argv) {
  Args args(
      "make-model", "--shape NAME --type TYPE -o FILE [options]",
      "Writes a deterministic synthetic GGUF model with the hyperparameters, tensor names and\n"
      "metadata of a real model and seeded random weights (same options -> same bytes).\n"
      "Performance does not depend on weight values, so these stand in for real models in\n"
      "benchmarks; the tiny shapes are for tests.");
  args.flag("--shape", "NAME", "model shape (see --list)", "tiny");
  args.flag("--type", "TYPE",
            file_type_list() + "\n(q4_k = q4_k_m, q5_k = q5_k_m, as llama-quantize)", "f16");
  args.flag("--pure", "", "every matrix in the type's own block format: no q6_K output or _M mix");
  args.flag("--vocab", "FILE", "copy the tokenizer from this GGUF and size the embedding by it",
            "a synthetic SPM vocabulary of the shape's size");
  args.flag("--seed", "N", "weight seed", "1");
  args.flag("--layers", "N", "override the number of layers (quick tests)");
  args.flag("--share-layers", "",
            "store one layer: every layer's tensors point at layer 0's data, so a 70B F16 file "
            "is 2.8 GB, not 138 GB; all layers then have the same weights (benchmarks only; "
            "loaders still give each layer its own memory)");
  args.flag("-t, --threads", "N", "worker threads", "all cores");
  args.flag("-o, --output", "FILE", "where to write the model");
  args.flag("--list", "", "list the shapes with their sizes and exit");
  args.flag("-q, --quiet", "", "no per-tensor progress");
  if (!args.parse(argc, argv)) return 0;
  if (args.on("list")) {
    list_shapes();
    return 0;
  }
  if (!args.positional().empty())
    throw Error("llm make-model: unexpected argument '" + args.positional()[0] +
                "' (the output file goes after -o)");
  MakeModelOptions o;
  o.shape = args.str("shape", "tiny");
  find_shape(o.shape);  // fail early with the list of names
  const std::string type = args.str("type", "f16");
  auto ft = file_type_from_name(type);
  if (!ft)
    throw Error("llm make-model: unknown --type '" + type + "' (one of " + file_type_list() + ")");
  o.type = *ft;
  o.pure = args.on("pure");
  o.share_layers = args.on("share-layers");
  o.vocab_path = args.str("vocab");
  const int64_t seed = args.i64("seed", 1);
  if (seed < 0) throw Error("llm make-model: --seed must be non-negative");
  o.seed = static_cast<uint64_t>(seed);
  const int64_t layers = args.i64("layers", 0);
  if (args.has("layers") && (layers <= 0 || layers > 1024))
    throw Error("llm make-model: --layers must be between 1 and 1024");
  o.n_layers = static_cast<int>(layers);
  const int64_t threads = args.i64("threads", 0);
  if (threads < 0 || threads > 1024)
    throw Error("llm make-model: --threads must be between 1 and 1024");
  o.n_threads = static_cast<int>(threads);
  o.progress = !args.on("quiet");
  const std::string out = args.str("output");
  if (out.empty()) throw Error("llm make-model: give the output file with -o FILE");
  make_model(o, out);
  return 0;
}

}  // namespace llm
