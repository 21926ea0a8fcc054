#!/usr/bin/env python3
"""Reference pre-tokenizer splits for tests/test_tokenizer.cpp, using the `regex`
module (Debian: python3-regex), which supports \\p{L} and friends.

Input (argv[1]): JSON {"cases": [{"patterns": [...], "texts": [...]}, ...]}.
Output (stdout): JSON [[pieces of text 0, pieces of text 1, ...] per case].

Each pattern re-splits every piece the previous patterns made, keeping both the
matches and the text between them ("isolated" splitting, as HF tokenizers' Split and
ByteLevel pre-tokenizers do). Empty matches split nothing.
Exit code 3 when the regex module is missing (the C++ test then skips).
"""
import json
import sys

try:
    import regex
except ImportError:
    print("python3-regex is not installed", file=sys.stderr)
    sys.exit(3)


def split(patterns, text):
    pieces = [text] if text else []
    for pattern in patterns:
        rx = regex.compile(pattern)
        out = []
        for piece in pieces:
            gap = 0
            for m in rx.finditer(piece):
                if m.end() == m.start():
                    continue
                if m.start() > gap:
                    out.append(piece[gap:m.start()])
                out.append(m.group(0))
                gap = m.end()
            if gap < len(piece):
                out.append(piece[gap:])
        pieces = out
    return pieces


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    result = [[split(case["patterns"], t) for t in case["texts"]] for case in spec["cases"]]
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
