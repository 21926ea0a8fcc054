// The chat page served at "/" by `llm serve`, embedded in the binary.
#pragma once

namespace llm {

// A complete HTML document (UTF-8) with its styles and script inline.
const char* web_ui_html();

}  // namespace llm
