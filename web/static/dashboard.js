// Dashboard: runs a view or query without blocking the web server (start a task, then poll
// for its result), and shows a view's HTML in a sandboxed frame: view output cannot run
// scripts nor touch this page.
"use strict";

const POLL_MS = 250;
// An embedded page opened with ?access_token= hands the token to this script (a <meta> tag):
// requests send it as a Bearer header. No cookie is set, so a link logs no one in.
const TOKEN = document.querySelector('meta[name="insights-token"]')?.content;

function authorized(headers = {}) {
  return TOKEN ? { ...headers, Authorization: `Bearer ${TOKEN}` } : headers;
}

// Images of this server in a view's HTML (its plots) carry the token too: they load without a cookie.
function withToken(html) {
  if (!TOKEN) return html;
  const doc = new DOMParser().parseFromString(html, "text/html");  // parsing runs no script
  for (const img of doc.querySelectorAll("img[src]")) {
    let url;
    try {
      url = new URL(img.getAttribute("src"), location.href);
    } catch {
      continue;  // not a URL: left as it is
    }
    if (url.origin !== location.origin) continue;  // never hand the token to another site
    url.searchParams.set("access_token", TOKEN);
    img.setAttribute("src", url.pathname + url.search);
  }
  return doc.documentElement.outerHTML;
}

function formArguments(form) {
  const args = {};
  for (const input of form.querySelectorAll("input[name]")) {
    if (input.value !== "") args[input.name] = input.value;
  }
  return args;
}

async function startRun(kind, name, args) {
  for (;;) {
    const response = await fetch(`/run/${kind}/${encodeURIComponent(name)}`, {
      method: "POST",
      headers: authorized({ "Content-Type": "application/json", "Accept": "application/json" }),
      body: JSON.stringify(args),
      credentials: "same-origin",
    });
    const body = await response.json();
    if (response.status === 429) {  // over this client's quota: wait as told, then start it
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      continue;
    }
    if (response.status !== 202) throw new Error(body.error || `HTTP ${response.status}`);
    return body.task;
  }
}

// A run that ended with an error (``/result`` answers 200 ``state: failed``); the traceback
// is there only for authors (auth off, or a token allowed ``tracebacks``).
class RunFailed extends Error {
  constructor(body) {
    super(body.error || "the run failed");
    this.traceback = body.traceback || null;
  }
}

async function awaitResult(task, onTick) {
  const started = performance.now();
  for (;;) {
    const response = await fetch(`/result/${task}`, { headers: authorized(), credentials: "same-origin" });
    const body = await response.json();
    if (response.status >= 400) throw new Error(body.error || `HTTP ${response.status}`);
    if (body.state === "done") return body;
    if (body.state === "failed") throw new RunFailed(body);  // delivered once: polling again would be a 404
    onTick((performance.now() - started) / 1000);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function fitFrame(frame) {
  const doc = frame.contentDocument;
  if (doc && doc.documentElement) frame.style.height = `${doc.documentElement.scrollHeight + 16}px`;
}

function show(card, kind, body) {
  const output = card.querySelector(".output-area");
  output.replaceChildren();
  if (kind === "view" && typeof body.result === "string") {
    const frame = document.createElement("iframe");
    frame.className = "output";
    frame.setAttribute("sandbox", "allow-same-origin");  // no scripts in view output
    frame.title = `${card.dataset.name} output`;
    frame.addEventListener("load", () => fitFrame(frame));
    frame.srcdoc = withToken(body.result);
    output.append(frame);
  } else {
    const pre = document.createElement("pre");
    pre.className = "output";
    pre.textContent = typeof body.result === "string" ? body.result : JSON.stringify(body.result, null, 2);
    output.append(pre);
  }
}

async function run(card, args) {
  const { kind, name } = card.dataset;
  const status = card.querySelector(".status");
  status.classList.remove("error");
  status.textContent = "starting…";
  try {
    const task = await startRun(kind, name, args);
    const body = await awaitResult(task, (s) => { status.textContent = `running… ${s.toFixed(1)} s`; });
    status.textContent = "done";
    card.dataset.state = "done";
    show(card, kind, body);
  } catch (error) {
    status.classList.add("error");
    status.textContent = error.message;
    card.dataset.state = "failed";
    const output = card.querySelector(".output-area");
    output.replaceChildren();
    if (error.traceback) {
      const pre = document.createElement("pre");
      pre.className = "output traceback";
      pre.textContent = error.traceback;
      output.append(pre);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const card of document.querySelectorAll(".card[data-kind]")) {
    const form = card.querySelector("form.run");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      run(card, formArguments(form));
    });
    if (card.dataset.autorun === "true") run(card, JSON.parse(card.dataset.args || "{}"));
  }
});
