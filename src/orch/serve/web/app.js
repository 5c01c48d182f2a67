// The page of `orch serve`: sign in with a token, run a published workflow from a form made
// of its input definitions, follow one's executions (live status, logs, cancel).
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 10;
const ACTIVE = new Set(["RUNNING", "CANCELLING"]);
let token = sessionStorage.getItem("orch-token") || "";
let offset = 0;
let selected = null; // the execution shown in detail
let follow = null; // the AbortController of its event stream
let refresher = null;

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut("Your token was not accepted (unknown or revoked). Sign in again.");
    throw new Error("unauthorized");
  }
  return response;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// -- signing in ------------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  token = $("token").value.trim();
  $("login-error").textContent = "";
  let response;
  try {
    response = await fetch("/workflows", { headers: { Authorization: "Bearer " + token } });
  } catch (error) {
    $("login-error").textContent = "The server cannot be reached: " + error.message;
    return;
  }
  if (!response.ok) {
    $("login-error").textContent = response.status === 401
      ? "This token is not valid (unknown or revoked)." : "The server answered " + response.status + ".";
    $("token").focus();
    return;
  }
  sessionStorage.setItem("orch-token", token);
  $("token").value = "";
  await show();
}

function signOut(message) {
  token = "";
  sessionStorage.removeItem("orch-token");
  if (follow) follow.abort();
  clearInterval(refresher);
  $("app").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function show() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  const me = await (await api("GET", "/user")).json();
  $("who-name").textContent = "Signed in as " + me.name;
  await Promise.all([loadWorkflows(), loadExecutions()]);
  clearInterval(refresher);
  refresher = setInterval(() => loadExecutions().catch(() => {}), 2000);
  $("workflows-title").focus?.();
}

// -- workflows and their forms ---------------------------------------------------------------
async function loadWorkflows() {
  const { workflows } = await (await api("GET", "/workflows")).json();
  const list = $("workflows");
  list.replaceChildren();
  $("workflows-empty").hidden = workflows.length > 0;
  for (const workflow of workflows) {
    list.append(el("li", {}, el("button", {
      type: "button", class: "workflow", "data-workflow": workflow.name,
      onclick: () => openForm(workflow.name),
    }, "Run " + workflow.name)));
  }
}

function constraint(definition, name) {
  const found = definition.constraints.find((c) => name in c);
  return found ? found[name] : undefined;
}

function field(definition) {
  const id = "input-" + definition.name;
  const help = definition.description ? id + "-help" : null;
  const error = id + "-error";
  const describedBy = [help, error].filter(Boolean).join(" ");
  const choices = constraint(definition, "valid_values");
  let control;
  if (Array.isArray(choices)) {
    control = el("select", { id, name: definition.name, "aria-describedby": describedBy });
    if (!definition.required) control.append(el("option", { value: "" }, "(default)"));
    for (const choice of choices) {
      control.append(el("option", { value: String(choice),
        selected: definition.default === choice }, String(choice)));
    }
  } else if (definition.type === "boolean") {
    control = el("input", { id, name: definition.name, type: "checkbox",
      checked: definition.default === true, "aria-describedby": describedBy });
  } else if (["list", "map"].includes(definition.type)) {
    control = el("textarea", { id, name: definition.name, rows: 3,
      "aria-describedby": describedBy, required: definition.required });
    if (definition.default !== null) control.value = JSON.stringify(definition.default);
  } else {
    const numeric = definition.type === "integer" || definition.type === "float";
    const range = constraint(definition, "in_range");
    control = el("input", {
      id, name: definition.name, "aria-describedby": describedBy,
      type: definition.secret ? "password" : numeric ? "number" : "text",
      step: definition.type === "integer" ? "1" : definition.type === "float" ? "any" : null,
      min: numeric ? (range ? range[0] : constraint(definition, "greater_or_equal")) : null,
      max: numeric ? (range ? range[1] : constraint(definition, "less_or_equal")) : null,
      minlength: constraint(definition, "min_length"),
      maxlength: constraint(definition, "max_length"),
      required: definition.required, autocomplete: definition.secret ? "new-password" : "off",
    });
    if (definition.default !== null) control.value = String(definition.default);
  }
  control.dataset.type = definition.type;
  const label = el("label", { for: id }, definition.name,
    el("span", { class: "type" }, " " + definition.type + (definition.required ? ", required" : "")));
  return el("div", { class: "field" }, label,
    help ? el("p", { class: "help", id: help }, definition.description) : "",
    control, el("p", { class: "error", id: error }));
}

async function openForm(name) {
  const response = await api("GET", "/workflows/" + encodeURIComponent(name));
  if (!response.ok) return;
  const workflow = await response.json();
  $("run").hidden = false;
  $("run").dataset.workflow = workflow.name;
  $("run-name").textContent = workflow.name;
  $("run-description").textContent = workflow.description;
  $("run-error").textContent = "";
  $("fields").replaceChildren(...workflow.inputs.map(field));
  if (!workflow.inputs.length) $("fields").append(el("p", {}, "This workflow takes no input."));
  ($("fields").querySelector("input, select, textarea") || $("start")).focus();
}

function formValues() {
  const inputs = {};
  for (const control of $("fields").querySelectorAll("input, select, textarea")) {
    const type = control.dataset.type;
    if (control.type === "checkbox") inputs[control.name] = control.checked;
    else if (control.value === "") continue; // the input's default
    else if (type === "integer" || type === "float") inputs[control.name] = Number(control.value);
    else inputs[control.name] = control.value;
  }
  return inputs;
}

async function start(event) {
  event.preventDefault();
  for (const error of $("fields").querySelectorAll(".error")) error.textContent = "";
  for (const control of $("fields").querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
  }
  $("run-error").textContent = "";
  const name = $("run").dataset.workflow;
  const response = await api("POST", "/workflows/" + encodeURIComponent(name),
    { inputs: formValues() });
  if (response.status === 201) {
    const id = response.headers.get("Location").split("/").pop();
    offset = 0;
    await loadExecutions();
    await openExecution(id, name);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 422 && Array.isArray(body.detail)) {
    let first = null;
    for (const problem of body.detail) {
      const input = problem.loc[problem.loc.length - 1];
      const target = $("input-" + input + "-error");
      if (target) {
        target.textContent += problem.msg + " ";
        $("input-" + input).setAttribute("aria-invalid", "true");
        first = first || $("input-" + input);
      } else {
        $("run-error").textContent += problem.msg + " ";
      }
    }
    (first || $("run-error")).focus?.();
    return;
  }
  $("run-error").textContent = typeof body.detail === "string" ? body.detail
    : "The server answered " + response.status + ".";
}

// -- executions ------------------------------------------------------------------------------
async function loadExecutions() {
  const response = await api("GET", "/executions?from=" + offset + "&size=" + PAGE);
  const page = await response.json();
  const rows = page.executions.map((execution) => el("tr", { "data-execution": execution.id },
    el("td", {}, execution.workflow),
    el("td", { class: "status " + execution.status.toLowerCase() }, execution.status),
    el("td", {}, when(execution.created)),
    el("td", {}, el("button", { type: "button", class: "open",
      onclick: () => openExecution(execution.id, execution.workflow),
      "aria-label": "Show execution " + execution.id + " of " + execution.workflow }, "Show"))));
  $("executions").tBodies[0].replaceChildren(...rows);
  $("executions-empty").hidden = page.total_results > 0;
  $("newer").disabled = offset === 0;
  $("older").disabled = offset + PAGE >= page.total_results;
  $("page-info").textContent = page.total_results
    ? (offset + 1) + "–" + (offset + page.executions.length) + " of " + page.total_results : "";
}

function showState(state) {
  $("detail-status").textContent = state.status;
  $("detail-status").className = "status " + state.status.toLowerCase();
  $("cancel").hidden = state.status !== "RUNNING";
  const outputs = Object.entries(state.outputs || {});
  $("outputs").replaceChildren(...outputs.flatMap(([key, value]) =>
    [el("dt", {}, key), el("dd", {}, typeof value === "string" ? value : JSON.stringify(value))]));
  if (!outputs.length) $("outputs").append(el("dd", {}, "none"));
}

async function openExecution(id, workflow) {
  if (follow) follow.abort();
  selected = id;
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  $("detail-workflow").textContent = workflow;
  $("logs").textContent = "";
  showState(await (await api("GET", "/executions/" + id)).json());
  $("detail-title").focus();
  streamEvents(id);
}

async function streamEvents(id) {
  const controller = new AbortController();
  follow = controller;
  let response;
  try {
    response = await fetch("/executions/" + id + "/events",
      { headers: { Authorization: "Bearer " + token }, signal: controller.signal });
  } catch (error) {
    return;
  }
  if (!response.ok || !response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        handle(id, buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch (error) {
    // aborted: another execution is shown now
  }
}

function handle(id, text) {
  if (id !== selected) return;
  let kind = "message";
  let data = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (kind === "log") {
    $("logs").append(payload.timestamp + " " + payload.level + " " + payload.content + "\n");
  } else if (kind === "status") {
    showState(payload);
  } else if (kind === "end") {
    api("GET", "/executions/" + id).then((r) => r.json()).then(showState).catch(() => {});
    loadExecutions().catch(() => {});
  }
}

async function cancel() {
  if (!selected) return;
  const response = await api("DELETE", "/executions/" + selected);
  if (response.status === 202) {
    $("detail-status").textContent = "CANCELLING";
    $("cancel").hidden = true;
    await loadExecutions();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("run-form").addEventListener("submit", start);
  $("cancel").addEventListener("click", cancel);
  $("newer").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadExecutions(); });
  $("older").addEventListener("click", () => { offset += PAGE; loadExecutions(); });
  if (token) show().catch(() => {}); else $("token").focus();
});
