// llm quantize: converts an f32/f16/bf16 GGUF model's weights to a quantized type.
#include "engine/convert.h"
#include "server/args.h"
#include "server/cli.h"

namespace llm {

int cmd_quantize(int argc, char** argv) {
  Args args(
      "quantize", "IN.gguf OUT.gguf TYPE [-t THREADS]",
      "Converts the weight matrices of an f32, f16 or bf16 GGUF model to TYPE, one of\n" +
          file_type_list() +
          ".\nq4_k_m and q5_k_m are llama.cpp's mixes (attn_v and ffn_down of some layers and the\n"
          "output in q6_K); 1-D tensors stay f32. Metadata is copied; general.file_type is "
          "updated.");
  args.flag("-t, --threads", "N", "worker threads", "all cores");
  args.flag("-q, --quiet", "", "no per-tensor progress");
  if (!args.parse(argc, argv)) return 0;
  const auto& pos = args.positional();
  if (pos.size() != 3)
    throw Error("llm quantize: expected IN.gguf OUT.gguf TYPE, got " + std::to_string(pos.size()) +
                " arguments (see 'llm quantize --help')");
  auto ft = file_type_from_name(pos[2]);
  if (!ft)
    throw Error("llm quantize: unknown type '" + pos[2] + "' (one of " + file_type_list() + ")");
  QuantizeOptions o;
  o.type = *ft;
  const int64_t threads = args.i64("threads", 0);
  if (threads < 0 || threads > 1024)
    throw Error("llm quantize: --threads must be between 1 and 1024");
  o.n_threads = static_cast<int>(threads);
  o.progress = !args.on("quiet");
  o.pure = args.on("pure");
  quantize_model(pos[0], pos[1], o);
  return 0;
}

}  // namespace llm
