#include "server/line_editor.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace llm {

struct LineEditor::Saved {
  termios tio{};
  bool valid = false;
};

// The state of one read() call. `pos` is a byte offset into `buf`, always at the start
// of a UTF-8 character.
struct LineEditor::Edit {
  std::string prompt;
  int prompt_w = 0;
  std::string buf;
  size_t pos = 0;
  size_t hist_pos = 0;  // history_.size(): the line being edited, not a history entry
  std::string stash;    // the line being edited while the history is shown
};

namespace {

bool is_cont(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

size_t next_char(const std::string& s, size_t i) {
  if (i >= s.size()) return s.size();
  ++i;
  while (i < s.size() && is_cont(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

size_t prev_char(const std::string& s, size_t i) {
  if (i == 0) return 0;
  --i;
  while (i > 0 && is_cont(static_cast<unsigned char>(s[i]))) --i;
  return i;
}

int code_points(const std::string& s, size_t from, size_t to) {
  int n = 0;
  for (size_t i = from; i < to; ++i) n += !is_cont(static_cast<unsigned char>(s[i]));
  return n;
}

// Byte offset of the n-th code point at or after `from`.
size_t advance(const std::string& s, size_t from, int n) {
  while (n-- > 0 && from < s.size()) from = next_char(s, from);
  return from;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n';
}

size_t word_left(const std::string& s, size_t i) {
  while (i > 0 && is_space(s[i - 1])) --i;
  while (i > 0 && !is_space(s[i - 1])) --i;
  return i;
}

size_t word_right(const std::string& s, size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  while (i < s.size() && !is_space(s[i])) ++i;
  return i;
}

int terminal_columns(int fd) {
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

// What the terminal shows for the buffer: control characters (a pasted tab) as spaces,
// so that one code point is one column.
std::string printable(const std::string& s) {
  std::string out = s;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 32 || c == 127) c = ' ';
  return out;
}

}  // namespace

int visible_width(const std::string& s) {
  int w = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      i += 2;
      while (i < s.size() && !(s[i] >= 0x40 && s[i] <= 0x7e)) ++i;
      continue;
    }
    w += !is_cont(static_cast<unsigned char>(s[i]));
  }
  return w;
}

LineEditor::LineEditor(int in_fd, int out_fd)
    : in_(in_fd), out_(out_fd), saved_(std::make_unique<Saved>()) {
  saved_->valid = tcgetattr(in_, &saved_->tio) == 0;
}

LineEditor::~LineEditor() {
  set_mode(Mode::Cooked);
}

void LineEditor::set_mode(Mode m) {
  if (!saved_->valid || m == mode_) return;
  termios t = saved_->tio;
  if (m == Mode::Raw) {
    // As cfmakeraw, but output post-processing stays on so that "\n" still means CR LF.
    t.c_iflag &= ~static_cast<tcflag_t>(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    t.c_cflag |= CS8;
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN | ISIG);
  } else if (m == Mode::Generating) {
    // Keys typed during an answer are neither echoed into it nor lost: they wait for
    // the next prompt. Ctrl-C still raises SIGINT, which stops the answer.
    t.c_iflag &= ~static_cast<tcflag_t>(ICRNL | IXON);
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN);
  }
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  // TCSADRAIN, not TCSAFLUSH: typed-ahead input must survive the switch.
  tcsetattr(in_, TCSADRAIN, m == Mode::Cooked ? &saved_->tio : &t);
  if (m == Mode::Raw) write_out("\x1b[?2004h");  // bracketed paste on
  if (mode_ == Mode::Raw) write_out("\x1b[?2004l");
  mode_ = m;
}

void LineEditor::write_out(const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(out_, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

int LineEditor::read_byte(int timeout_ms) {
  for (;;) {
    if (timeout_ms >= 0) {
      pollfd p{in_, POLLIN, 0};
      int r = poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return -1;
    }
    unsigned char c;
    ssize_t n = ::read(in_, &c, 1);
    if (n < 0 && errno == EINTR) continue;  // SIGWINCH and friends
    return n == 1 ? c : -1;
  }
}

void LineEditor::add_history(const std::string& line) {
  if (line.empty() || (!history_.empty() && history_.back() == line)) return;
  history_.push_back(line);
}

void LineEditor::history_step(Edit& e, bool up) {
  if (up ? e.hist_pos == 0 : e.hist_pos >= history_.size()) return;
  if (e.hist_pos == history_.size()) e.stash = e.buf;
  e.hist_pos = up ? e.hist_pos - 1 : e.hist_pos + 1;
  e.buf = e.hist_pos == history_.size() ? e.stash : history_[e.hist_pos];
  e.pos = e.buf.size();
}

void LineEditor::refresh(const Edit& e) {
  // One row: scroll the text so that the cursor stays visible (linenoise's single-line mode).
  const int avail = std::max(1, terminal_columns(out_) - e.prompt_w - 1);
  const int cur = code_points(e.buf, 0, e.pos);
  const int first = cur >= avail ? cur - avail + 1 : 0;
  const size_t from = advance(e.buf, 0, first);
  const size_t to = advance(e.buf, from, avail);
  std::string s = "\r" + e.prompt + printable(e.buf.substr(from, to - from)) + "\x1b[0K\r";
  const int col = e.prompt_w + cur - first;
  if (col > 0) s += "\x1b[" + std::to_string(col) + "C";
  write_out(s);
}

bool LineEditor::handle_escape(Edit& e) {
  int c = read_byte(100);
  if (c < 0) return true;      // a lone ESC
  if (c == 'b' || c == 'f') {  // Alt-b / Alt-f
    e.pos = c == 'b' ? word_left(e.buf, e.pos) : word_right(e.buf, e.pos);
    return true;
  }
  if (c == 127) {  // Alt-Backspace
    const size_t w = word_left(e.buf, e.pos);
    e.buf.erase(w, e.pos - w);
    e.pos = w;
    return true;
  }
  if (c != '[' && c != 'O') return true;
  std::string seq;
  for (;;) {
    int b = read_byte(100);
    if (b < 0) return false;
    seq += static_cast<char>(b);
    if (b >= 0x40 && b <= 0x7e) break;  // the final byte of a CSI sequence
    if (c == 'O' || seq.size() > 16) break;
  }
  if (seq == "200~") {
    in_paste_ = true;
    return true;
  }
  if (seq == "201~") {
    in_paste_ = false;
    return true;
  }
  if (in_paste_) return true;
  const char fin = seq.back();
  const bool ctrl = seq.find(";5") != std::string::npos;
  if (fin == 'A' || fin == 'B') {  // history
    history_step(e, fin == 'A');
  } else if (fin == 'C') {
    e.pos = ctrl ? word_right(e.buf, e.pos) : next_char(e.buf, e.pos);
  } else if (fin == 'D') {
    e.pos = ctrl ? word_left(e.buf, e.pos) : prev_char(e.buf, e.pos);
  } else if (fin == 'H' || seq == "1~" || seq == "7~") {
    e.pos = 0;
  } else if (fin == 'F' || seq == "4~" || seq == "8~") {
    e.pos = e.buf.size();
  } else if (seq == "3~") {
    e.buf.erase(e.pos, next_char(e.buf, e.pos) - e.pos);
  }
  return true;
}

LineEditor::Result LineEditor::read(const std::string& prompt) {
  Edit e;
  e.prompt = prompt;
  e.prompt_w = visible_width(prompt);
  e.hist_pos = history_.size();
  set_mode(Mode::Raw);
  refresh(e);
  Result r;
  bool done = false;
  while (!done) {
    const int c = read_byte(-1);
    if (c < 0) {  // input closed: what was typed still counts
      r.status = e.buf.empty() ? Status::Eof : Status::Line;
      break;
    }
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') continue;
    }
    if (c == 27) {
      if (!handle_escape(e)) {
        r.status = e.buf.empty() ? Status::Eof : Status::Line;
        break;
      }
    } else if (c == '\r' || c == '\n') {
      skip_lf_ = c == '\r';
      r.status = Status::Line;
      r.continued = in_paste_;
      done = true;
    } else if (in_paste_ || c >= 32 || c == '\t') {
      if (c == 127 && !in_paste_) {  // Backspace
        const size_t p = prev_char(e.buf, e.pos);
        e.buf.erase(p, e.pos - p);
        e.pos = p;
      } else {
        e.buf.insert(e.pos, 1, static_cast<char>(c));
        ++e.pos;
        // A partial UTF-8 character: take its continuation bytes before moving on.
        while (c >= 0xC0 && e.pos < e.buf.size() &&
               is_cont(static_cast<unsigned char>(e.buf[e.pos])))
          ++e.pos;
      }
    } else {
      switch (c) {
        case 1:
          e.pos = 0;
          break;  // Ctrl-A
        case 2:
          e.pos = prev_char(e.buf, e.pos);
          break;  // Ctrl-B
        case 3:   // Ctrl-C
          r.status = Status::Interrupt;
          done = true;
          break;
        case 4:  // Ctrl-D
          if (e.buf.empty()) {
            r.status = Status::Eof;
            done = true;
          } else {
            e.buf.erase(e.pos, next_char(e.buf, e.pos) - e.pos);
          }
          break;
        case 5:
          e.pos = e.buf.size();
          break;  // Ctrl-E
        case 6:
          e.pos = next_char(e.buf, e.pos);
          break;   // Ctrl-F
        case 8: {  // Ctrl-H (Backspace)
          const size_t p = prev_char(e.buf, e.pos);
          e.buf.erase(p, e.pos - p);
          e.pos = p;
          break;
        }
        case 11:
          e.buf.erase(e.pos);
          break;  // Ctrl-K
        case 12:
          write_out("\x1b[H\x1b[2J");
          break;  // Ctrl-L
        case 14:
          history_step(e, false);
          break;  // Ctrl-N
        case 16:
          history_step(e, true);
          break;  // Ctrl-P
        case 21:  // Ctrl-U
          e.buf.erase(0, e.pos);
          e.pos = 0;
          break;
        case 23: {  // Ctrl-W
          const size_t w = word_left(e.buf, e.pos);
          e.buf.erase(w, e.pos - w);
          e.pos = w;
          break;
        }
        default:
          break;
      }
    }
    // Redraw once the burst of input (a paste, a key's escape sequence) is consumed.
    if (!done) {
      pollfd p{in_, POLLIN, 0};
      if (poll(&p, 1, 0) <= 0) refresh(e);
    }
  }
  r.text = e.buf;
  // The whole line once more, unscrolled, so that scrollback keeps what was sent.
  std::string tail = "\r" + e.prompt + printable(e.buf) + "\x1b[0K";
  if (r.status == Status::Interrupt) tail += "^C";
  write_out(tail + "\r\n");
  set_mode(Mode::Cooked);
  return r;
}

}  // namespace llm
