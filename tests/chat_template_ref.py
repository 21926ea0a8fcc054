#!/usr/bin/env python3
"""Reference renderer for tests/test_chat_template.cpp: renders chat templates with Python
jinja2 in the environment Hugging Face transformers builds in apply_chat_template
(transformers/utils/chat_template_utils.py, _compile_jinja_template):

  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker, jinja2.ext.loopcontrols])
  filters["tojson"]         = json.dumps(x, ensure_ascii=False, indent, separators, sort_keys)
  globals["raise_exception"] raises TemplateError(message)
  globals["strftime_now"]   = datetime.now().strftime(format)   (pinned here, see "now")

and renders with template.render(messages=..., tools=..., documents=None,
add_generation_prompt=..., bos_token=..., eos_token=..., **extra).

stdin:  {"now": "YYYY-MM-DDTHH:MM:SS",
         "templates": {name: source},
         "cases": [{"template": name, "messages": [...], "tools": [...] | null,
                    "add_generation_prompt": bool, "bos_token": str, "eos_token": str,
                    "extra": {...}}]}
stdout: a JSON array, one entry per case: {"ok": true, "text": ...} or
        {"ok": false, "error": "ExceptionType: message"}
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(Extension):
    """transformers' AssistantTracker with tracking off: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_generation_support")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    request = json.load(sys.stdin)
    env = make_env(datetime.fromisoformat(request["now"]))
    compiled = {}
    for name, source in request["templates"].items():
        try:
            compiled[name] = env.from_string(source)
        except Exception as e:  # noqa: BLE001 - the test compares failures too
            compiled[name] = e
    results = []
    for case in request["cases"]:
        template = compiled[case["template"]]
        if isinstance(template, Exception):
            results.append({"ok": False, "error": f"{type(template).__name__}: {template}"})
            continue
        try:
            text = template.render(messages=case["messages"], tools=case["tools"], documents=None,
                                   add_generation_prompt=case["add_generation_prompt"],
                                   bos_token=case["bos_token"], eos_token=case["eos_token"],
                                   **case.get("extra", {}))
            results.append({"ok": True, "text": text})
        except Exception as e:  # noqa: BLE001
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
