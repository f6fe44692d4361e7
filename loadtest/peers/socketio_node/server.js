// The fan-out benchmark's Node.js peer: socket.io 4 on Node's `http` server, the stack most
// teams reach for when they do not hand-roll a Python one.
//
//     node loadtest/peers/socketio_node/server.js --port 8096     (or PORT=8096)
//
// It behaves exactly like the python-socketio peer (loadtest/peers/socketio_server.py), so the
// same generator socket (PeerSocket in loadtest/targets.py) and the same `POST /send` body drive
// both: WebSocket transport only (Engine.IO v4, no polling, no upgrade), no permessage-deflate,
// socket.io's default ping interval and timeout (the same as python-socketio's). A client
// connects with `auth={"profile": "<id>"}` (or `?profile=<id>`) and joins the room named after
// its profile. `POST /send {"to": [...], "content": {...}, "from": {...}}` emits `message` to
// each recipient's room, with the python peer's payload field for field and a per-recipient
// `seq` kept in memory, and answers `{"msgId": ...}`. `GET /readyz` answers 200.
//
// One process with socket.io's default in-memory adapter: no Redis, nothing fanned out to other
// processes (the python peer publishes each emit on Redis; this one does not, so it is spared
// that work too). It persists nothing and authenticates nobody: a restart loses every seq and
// every message in flight, and anyone may claim any profile. It listens on 127.0.0.1 only.
//
// loadtest/peers/node_server.py installs socket.io (pinned in package.json and
// package-lock.json) into .cache/ and runs this file with NODE_PATH pointing there.

"use strict";

const http = require("node:http");
const { randomUUID } = require("node:crypto");
const { Server } = require("socket.io");

const HOST = "127.0.0.1";
const MAX_RECIPIENTS = 1000;
const MAX_BODY_BYTES = 1 << 20;

function port() {
  const flag = process.argv.indexOf("--port");
  const value = flag >= 0 ? process.argv[flag + 1] : process.env.PORT || "8096";
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0 || number > 65535) {
    throw new Error(`bad port: ${value}`);
  }
  return number;
}

function reply(res, status, body, type = "application/json") {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

const seqs = new Map();
let io;

// The python peer's `send`: the same checks, the same 400 bodies, the same payload.
function send(raw, res) {
  let body, to, content, sender;
  try {
    body = JSON.parse(raw);
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw new TypeError();
    if (!Object.hasOwn(body, "to") || !Object.hasOwn(body, "content")) throw new TypeError();
    ({ to, content } = body);
    sender = Object.hasOwn(body, "from") ? body.from : { id: null, name: "peer" };
  } catch {
    return reply(res, 400, JSON.stringify({ error: "expected {to: [...], content: {...}}" }));
  }
  if (!Array.isArray(to) || !(to.length > 0 && to.length <= MAX_RECIPIENTS)) {
    return reply(res, 400, JSON.stringify({ error: `to: 1 to ${MAX_RECIPIENTS} profile ids` }));
  }
  const msgId = randomUUID().replaceAll("-", "");
  const now = Date.now();
  for (const profile of to) {
    const seq = (seqs.get(profile) || 0) + 1;
    seqs.set(profile, seq);
    io.to(profile).emit("message", {
      seq, service: "messaging", operation: "INCOMING",
      data: {
        msgbox: "inbox", msgId, read: false,
        mbCr: now, mbUp: now, mbVer: 1,
        msgCr: now, msgUp: now, msgVer: 1,
        message: { from: sender, to: [profile], sentAt: now, content },
      },
    });
  }
  return reply(res, 200, JSON.stringify({ msgId }));
}

// socket.io answers /socket.io/ itself and hands every other request to this handler.
const server = http.createServer((req, res) => {
  const path = req.url.split("?", 1)[0];
  if (path === "/readyz") {
    if (req.method !== "GET" && req.method !== "HEAD") return reply(res, 405, "", "text/plain");
    return reply(res, 200, "ok", "text/plain; charset=utf-8");
  }
  if (path !== "/send") return reply(res, 404, "Not Found", "text/plain; charset=utf-8");
  if (req.method !== "POST") return reply(res, 405, "Method Not Allowed", "text/plain");
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      reply(res, 413, "", "text/plain");
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (!res.writableEnded) send(Buffer.concat(chunks).toString("utf8"), res);
  });
});

io = new Server(server, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
});

// Joined before the namespace CONNECT is answered, as python-socketio's connect handler does;
// a missing profile is refused with `44{"message":"auth.profile is required"}`, as there.
io.use((socket, next) => {
  const { auth, query } = socket.handshake;
  let profile = auth && typeof auth === "object" ? auth.profile : undefined;
  if (!profile) profile = [query.profile].flat()[0]; // the first ?profile=, as parse_qs gives
  if (typeof profile !== "string" || !profile) {
    return next(new Error("auth.profile is required"));
  }
  socket.join(profile);
  next();
});

server.listen(port(), HOST);
