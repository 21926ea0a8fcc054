// The built-in chat page served at "/": one self-contained HTML document (no CDN, works
// offline) that talks to this server's /v1/chat/completions with streaming.
#include "server/web_ui.h"

namespace llm {

const char* web_ui_html() {
  return R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llm</title>
<style>
  :root { --bg:#f7f7f8; --fg:#1d1d1f; --muted:#6e6e73; --user:#dbeafe; --bot:#fff; --accent:#2563eb; --border:#d4d4d8; }
  @media (prefers-color-scheme: dark) {
    :root { --bg:#18181b; --fg:#e4e4e7; --muted:#a1a1aa; --user:#1e3a5f; --bot:#27272a; --accent:#60a5fa; --border:#3f3f46; }
  }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.5 system-ui, sans-serif; background:var(--bg); color:var(--fg); display:flex; flex-direction:column; height:100vh; }
  header { display:flex; gap:.5rem; align-items:center; padding:.5rem 1rem; border-bottom:1px solid var(--border); }
  header h1 { font-size:1rem; margin:0; flex:1; }
  header .model { color:var(--muted); font-size:.85rem; }
  button { font:inherit; padding:.35rem .8rem; border:1px solid var(--border); border-radius:6px; background:var(--bot); color:var(--fg); cursor:pointer; }
  button.primary { background:var(--accent); color:#fff; border-color:var(--accent); }
  button:disabled { opacity:.5; cursor:default; }
  #system { width:100%; font:inherit; padding:.4rem; border:1px solid var(--border); border-radius:6px; background:var(--bot); color:var(--fg); resize:vertical; }
  details { padding:.3rem 1rem; border-bottom:1px solid var(--border); }
  #log { flex:1; overflow-y:auto; padding:1rem; display:flex; flex-direction:column; gap:.75rem; }
  .msg { max-width:52rem; padding:.6rem .9rem; border-radius:10px; border:1px solid var(--border); overflow-wrap:anywhere; }
  .msg.user { align-self:flex-end; background:var(--user); white-space:pre-wrap; }
  .msg.assistant { align-self:flex-start; background:var(--bot); }
  .msg.error { border-color:#dc2626; color:#dc2626; }
  .msg p { margin:.45em 0; }
  .msg > :first-child { margin-top:0; }
  .msg pre { background:rgba(127,127,127,.12); padding:.5rem; border-radius:6px; overflow-x:auto; }
  .msg code { font-family:ui-monospace, monospace; font-size:.9em; }
  .stats { color:var(--muted); font-size:.8rem; margin-top:.3rem; }
  form { display:flex; gap:.5rem; padding:.75rem 1rem; border-top:1px solid var(--border); }
  #input { flex:1; font:inherit; padding:.5rem; border:1px solid var(--border); border-radius:6px; background:var(--bot); color:var(--fg); resize:none; }
</style>
</head>
<body>
<header>
  <h1>llm</h1><span class="model" id="model"></span>
  <button id="new" type="button" title="Start a new conversation">New chat</button>
</header>
<details><summary>System prompt</summary>
  <textarea id="system" rows="2" placeholder="You are a helpful assistant."></textarea>
</details>
<div id="log" aria-live="polite"></div>
<form id="form">
  <textarea id="input" rows="2" placeholder="Send a message (Enter to send, Shift+Enter for a new line)"></textarea>
  <button id="send" class="primary" type="submit">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let history = [];
let controller = null;
let modelId = "default";

fetch("/v1/models").then(r => r.json()).then(j => {
  if (j.data && j.data.length) { modelId = j.data[0].id; $("model").textContent = modelId; }
}).catch(() => {});

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
}
function inline(s) {
  return s
    .replace(/`([^`]+)`/g, (m, c) => "<code>" + c + "</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:[^)\s]+)\)/g, "<a href=\"$2\" target=\"_blank\" rel=\"noopener\">$1</a>");
}
// A small Markdown subset: fenced code, headings, lists, quotes, paragraphs, inline marks.
function markdown(src) {
  const lines = escapeHtml(src).split("\n");
  let out = "", i = 0, para = [];
  const flush = () => { if (para.length) { out += "<p>" + inline(para.join("<br>")) + "</p>"; para = []; } };
  while (i < lines.length) {
    const l = lines[i];
    if (/^```/.test(l)) {
      flush(); const code = []; i++;
      while (i < lines.length && !/^```/.test(lines[i])) code.push(lines[i++]);
      i++; out += "<pre><code>" + code.join("\n") + "</code></pre>"; continue;
    }
    let m;
    if ((m = /^(#{1,6})\s+(.*)$/.exec(l))) { flush(); out += "<h" + m[1].length + ">" + inline(m[2]) + "</h" + m[1].length + ">"; i++; continue; }
    if (/^\s*([-*+]|\d+\.)\s+/.test(l)) {
      flush(); const ordered = /^\s*\d+\./.test(l); const items = [];
      while (i < lines.length && /^\s*([-*+]|\d+\.)\s+/.test(lines[i])) items.push(lines[i++].replace(/^\s*([-*+]|\d+\.)\s+/, ""));
      out += (ordered ? "<ol>" : "<ul>") + items.map(x => "<li>" + inline(x) + "</li>").join("") + (ordered ? "</ol>" : "</ul>"); continue;
    }
    if (/^&gt;\s?/.test(l)) { flush(); out += "<blockquote>" + inline(l.replace(/^&gt;\s?/, "")) + "</blockquote>"; i++; continue; }
    if (l.trim() === "") { flush(); i++; continue; }
    para.push(l); i++;
  }
  flush();
  return out;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  if (role === "assistant") div.innerHTML = markdown(text); else div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

function setBusy(busy) {
  $("send").disabled = busy; $("stop").disabled = !busy;
}

async function send(text) {
  history.push({role: "user", content: text});
  addMessage("user", text);
  const div = addMessage("assistant", "");
  const stats = document.createElement("div"); stats.className = "stats";
  const messages = [];
  const sys = $("system").value.trim();
  if (sys) messages.push({role: "system", content: sys});
  messages.push(...history);
  controller = new AbortController();
  setBusy(true);
  let answer = "", nTokens = 0, tStart = performance.now(), tFirst = 0, stopped = false;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: {"Content-Type": "application/json"}, signal: controller.signal,
      body: JSON.stringify({model: modelId, messages, stream: true, stream_options: {include_usage: true}})
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({error: {message: res.statusText}}));
      throw new Error(err.error ? err.error.message : res.statusText);
    }
    const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, k); buf = buf.slice(k + 2);
        if (!ev.startsWith("data: ")) continue;
        const data = ev.slice(6);
        if (data === "[DONE]") continue;
        const j = JSON.parse(data);
        if (j.usage && j.usage.completion_tokens) nTokens = j.usage.completion_tokens;
        const c = j.choices && j.choices[0];
        if (c && c.delta && c.delta.content) {
          if (!tFirst) tFirst = performance.now();
          answer += c.delta.content; if (!j.usage) nTokens++;
          div.innerHTML = markdown(answer);
          $("log").scrollTop = $("log").scrollHeight;
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") stopped = true;
    else { div.classList.add("error"); div.textContent = "Error: " + e.message; }
  }
  controller = null; setBusy(false);
  if (answer) history.push({role: "assistant", content: answer});
  const tEnd = performance.now();
  if (tFirst) {
    const gen = (tEnd - tFirst) / 1000;
    stats.textContent = nTokens + " tokens · " + (nTokens > 1 && gen > 0 ? ((nTokens - 1) / gen).toFixed(1) : "–") +
      " tok/s · first token " + ((tFirst - tStart)).toFixed(0) + " ms" + (stopped ? " · stopped" : "");
    div.appendChild(stats);
  } else if (stopped) { stats.textContent = "stopped"; div.appendChild(stats); }
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("new").addEventListener("click", () => {
  if (controller) controller.abort();
  history = []; $("log").innerHTML = ""; $("input").focus();
});
</script>
</body>
</html>
)HTML";
}

}  // namespace llm
