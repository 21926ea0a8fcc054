// A small line editor for `llm chat` on a terminal: raw-mode input with cursor movement,
// kill commands, in-memory history and bracketed paste, in the spirit of linenoise (one
// line, scrolled horizontally when it is wider than the terminal), with no dependency.
//
// Keys:  Left/Right, Ctrl-B/F     move by one character (UTF-8 aware)
//        Ctrl-Left/Right          move by one word
//        Home/End, Ctrl-A/E       start / end of line
//        Backspace, Delete        delete before / under the cursor
//        Ctrl-U / Ctrl-K          delete to the start / to the end of the line
//        Ctrl-W                   delete the word before the cursor
//        Up/Down, Ctrl-P/N        walk the history
//        Ctrl-L                   clear the screen
//        Ctrl-C                   give up the line (Status::Interrupt)
//        Ctrl-D                   end of input on an empty line, else delete under the cursor
// A paste (bracketed paste mode, xterm's ESC[200~ ... ESC[201~) is taken literally: its
// newlines end a line with `continued` set instead of submitting it.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace llm {

class LineEditor {
 public:
  enum class Status { Line, Eof, Interrupt };
  struct Result {
    Status status = Status::Eof;
    std::string text;        // the line without its newline (for Interrupt: what was typed)
    bool continued = false;  // ended by a newline inside a paste: more of the message follows
  };

  // in_fd must be a terminal; out_fd is where the prompt and echo go.
  LineEditor(int in_fd, int out_fd);
  ~LineEditor();  // leaves the terminal as it was found
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  // Shows `prompt` (which may contain SGR colour sequences) and edits one line. The
  // terminal is raw only inside this call, so output between calls behaves normally.
  Result read(const std::string& prompt);

  // The terminal's mode outside read(): Cooked is how it was found; Generating keeps
  // Ctrl-C as SIGINT but neither echoes nor line-buffers keys typed meanwhile (they wait
  // for the next read()). read() itself runs in Raw.
  enum class Mode { Cooked, Generating, Raw };
  void set_mode(Mode m);

  // Adds an entry for Up/Down, skipping empty lines and repeats of the last entry.
  void add_history(const std::string& line);
  const std::vector<std::string>& history() const { return history_; }

 private:
  struct Edit;                    // the state of one read() call
  int read_byte(int timeout_ms);  // -1 at end of input or timeout
  bool handle_escape(Edit& e);    // after ESC; false when the input ended
  void refresh(const Edit& e);
  void write_out(const std::string& s);
  void history_step(Edit& e, bool up);

  int in_, out_;
  Mode mode_ = Mode::Cooked;
  bool in_paste_ = false;  // between ESC[200~ and ESC[201~, possibly across read() calls
  bool skip_lf_ = false;   // a CR just ended a line: a following LF belongs to it
  std::vector<std::string> history_;
  struct Saved;
  std::unique_ptr<Saved> saved_;  // the termios found at construction (keeps <termios.h> out)
};

// Display width of a prompt: code points, not counting ESC[...m colour sequences.
int visible_width(const std::string& s);

}  // namespace llm
