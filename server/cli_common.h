// What the engine-driving commands (serve, chat, bench) share: the model/device flags,
// loading a model with its tokenizer and backend, and the engine configuration.
#pragma once
#include <memory>

#include <string>

#include "engine/backend.h"
#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "server/args.h"
#include "server/spec_cli.h"

namespace llm {

// -m, -t, -c, --device, --gpu, --tp, --kv-tokens, --parallel, --batch-tokens, --block-size,
// --policy, --no-prefix-cache, and the speculative-decoding flags (server/spec_cli.h).
void add_model_flags(Args& a);

// --f16-copy auto|on|off: the CUDA backend's dense f16 weight copy for many-row steps
// (BackendOptions::f16_copy). add_model_flags adds it; run and bench add it themselves.
void add_f16_copy_flag(Args& a);
BackendOptions::F16Copy f16_copy_of(const Args& a);
// --deterministic: batch-invariant results (BackendOptions::deterministic). add_model_flags
// adds it (and engine_config then samples every step from full logits rows, so that a
// request's logprobs never depend on what its batch needed); run and bench add it themselves.
void add_deterministic_flag(Args& a);
// --tp N: tensor parallelism over N devices (engine/backend_tp.h); run and bench add it
// alone. tp_of reads it (default 1) and throws llm::Error below 1.
void add_tp_flag(Args& a);
int tp_of(const Args& a);

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  SpecSetup spec;  // the proposer of --spec, if any
};

// Loads the model named by -m (or the first positional) on the chosen device.
LoadedModel load_model(const Args& a);

EngineConfig engine_config(const Args& a, const Tokenizer& tok);
// The same, with the loaded model's speculative decoding.
EngineConfig engine_config(const Args& a, const LoadedModel& lm);

// The chat template: --chat-template NAME|FILE (a built-in name or a Jinja file), else
// the model's own tokenizer.chat_template, else the built-in chatml with a warning on
// stderr naming `who` (the command).
ChatTemplate pick_chat_template(const std::string& flag, const GgufFile& file, const Tokenizer& tok,
                                const std::string& who);
// The template's source text (for detecting its tool-call style): the file's contents,
// the built-in name, or the model's own template.
std::string chat_template_source(const std::string& flag, const GgufFile& file);

// The device: --device cuda|cpu, default CUDA when a GPU is present.
DeviceKind device_of(const Args& a);

}  // namespace llm
