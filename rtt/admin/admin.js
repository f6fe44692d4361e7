// rtt admin page: polls the node's /admin/api endpoints (the browser sends the Basic credentials
// it was given for /admin) and sends system messages. No build step, no dependencies.
"use strict";

const STATS_EVERY_MS = 2000;
const OUTBOX_EVERY_MS = 5000;
let previous = null; // the last stats answer, for rates
let outboxContext = null; // where the shown outbox page starts (null: the oldest entries)

const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch("/admin/api/" + path, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.status_message || response.statusText);
  }
  return body;
}

function rate(now, before, key) {
  if (!before || now[key] === null || before[key] === null || now.at <= before.at) {
    return "–";
  }
  return ((now[key] - before[key]) * 1000 / (now.at - before.at)).toFixed(1);
}

async function refreshStats() {
  try {
    const stats = await api("stats");
    $("who").textContent = stats.user + " · app " + stats.app;
    $("connections").textContent = stats.metrics ? stats.connections : "metrics off";
    $("send-rate").textContent = rate(stats, previous, "sends");
    $("delivery-rate").textContent = rate(stats, previous, "deliveries");
    previous = stats;
  } catch (error) {
    $("connections").textContent = "–";
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

async function refreshOutbox(context) {
  const query = context ? "?context=" + encodeURIComponent(context) : "";
  const page = await api("outbox" + query);
  outboxContext = context;
  $("depth").textContent = page.depth === null || page.depth === undefined ? "–" : page.depth;
  $("dropped").textContent = page.dropped ? "(" + page.dropped + " dropped by retention)" : "";
  const rows = $("pending");
  rows.replaceChildren();
  for (const item of page.items) {
    const row = document.createElement("tr");
    cell(row, new Date(item.createdAt).toLocaleString());
    cell(row, item.profileId);
    cell(row, item.kind);
    cell(row, item.title);
    cell(row, item.body);
    rows.appendChild(row);
  }
  const older = $("older");
  older.hidden = !page.moreAfter;
  older.onclick = () => refreshOutbox(page.context);
}

async function send(event) {
  event.preventDefault();
  const output = $("sent");
  const to = $("to").value.split(",").map((id) => id.trim()).filter((id) => id);
  output.className = "";
  output.textContent = "sending…";
  try {
    const answer = await api("send", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ toProfileIds: to, text: $("text").value }),
    });
    output.textContent = "sent: msgId " + answer.msgId;
    $("text").value = "";
    refreshOutbox(outboxContext).catch(() => {});
  } catch (error) {
    output.className = "error";
    output.textContent = "not sent: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("send").addEventListener("submit", send);
  $("first").addEventListener("click", () => refreshOutbox(null).catch(() => {}));
  refreshStats();
  refreshOutbox(null).catch(() => {});
  setInterval(refreshStats, STATS_EVERY_MS);
  setInterval(() => refreshOutbox(outboxContext).catch(() => {}), OUTBOX_EVERY_MS);
});
