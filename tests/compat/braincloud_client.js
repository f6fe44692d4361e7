// Drives the official brainCloud JavaScript client (npm `braincloud`), unmodified, against an
// rtt node: sign in anonymously, enable RTT, receive an S2S message and an S2S event on the
// library's callbacks, read counts and a page and mark read through /dispatcherv2, disable RTT,
// sign in again with the stored anonymous id. Prints one JSON summary line; exits non-zero on
// the first failure. Every wait is bounded. Set up as the library's README says for Node.js.
// With BC_PIGGYBACK=1 (an app with piggyback_events on) the S2S event must also reach the
// library's event callback (registerEventCallback) through a response's `events` array; either
// way the script records every call of that callback, and deletes the event once handled.
/* eslint-disable no-global-assign */
const env = process.env;
XMLHttpRequest = require("xmlhttprequest").XMLHttpRequest;
window = { XMLHttpRequest: XMLHttpRequest };
XMLHttpRequest.UNSENT = 0;
XMLHttpRequest.OPENED = 1;
XMLHttpRequest.HEADERS_RECEIVED = 2;
XMLHttpRequest.LOADING = 3;
XMLHttpRequest.DONE = 4;
WebSocket = require("ws");
LocalStorage = require("node-localstorage/LocalStorage").LocalStorage;
localStorage = new LocalStorage(env.BC_STORAGE);
const BC = require("braincloud");

const STEP_MS = 10000;

function fail(step, detail) {
  console.log(JSON.stringify({ ok: false, step: step, detail: detail }));
  process.exit(1);
}

function bounded(step, start) {
  return new Promise(function (resolve, reject) {
    const timer = setTimeout(function () { reject(new Error("timed out")); }, STEP_MS);
    start(function (value) { clearTimeout(timer); resolve(value); },
          function (error) { clearTimeout(timer); reject(error); });
  }).catch(function (e) { fail(step, String(e && e.message ? e.message : JSON.stringify(e))); });
}

function api(step, call) {  // a client API call: its callback gets the response object
  return bounded(step, function (resolve) { call(resolve); }).then(function (result) {
    if (!result || result.status !== 200) fail(step, result);
    return result.data;
  });
}

function until(step, check) {
  return bounded(step, function (resolve) {
    const poll = setInterval(function () {
      if (check()) { clearInterval(poll); resolve(); }
    }, 20);
  });
}

async function s2s(step, service, operation, data) {
  const response = await fetch(env.RTT_URL + "/s2sdispatcher", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ appId: env.BC_APP, serverName: env.BC_SERVER,
      serverSecret: env.BC_SERVER_SECRET, service: service, operation: operation, data: data }),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const body = await response.json();
  if (body.status !== 200) fail(step, body);
  return body.data;
}

async function main() {
  const bc = new BC.BrainCloudWrapper("compat");
  bc.initialize(env.BC_APP, env.BC_SECRET, "1.0.0");
  bc.brainCloudClient.setServerUrl(env.RTT_URL);

  const first = await api("authenticate", function (cb) { bc.authenticateAnonymous(cb); });
  const anonymousId = bc.getStoredAnonymousId();

  const messages = [];
  const events = [];
  const piggybacked = [];  // each call of the event callback: {"events": [...]}
  bc.rttService.registerRTTMessagingCallback(function (m) { messages.push(m); });
  bc.rttService.registerRTTEventCallback(function (e) { events.push(e); });
  bc.brainCloudClient.registerEventCallback(function (e) { piggybacked.push(e); });
  const connected = await bounded("enableRTT", function (resolve, reject) {
    bc.rttService.enableRTT(resolve, reject);
  });

  const sent = await s2s("send message", "messaging", "SYS_SEND_MESSAGE", {
    toProfileIds: [first.profileId], contentJson: { text: "hello from rtt" },
    fromJson: { id: null, name: "Admin" } });
  await s2s("send event", "event", "SYS_SEND_EVENT_TO_PROFILES", {
    toIds: [first.profileId], eventType: "greeting", eventData: { n: 1 }, fromProfileId: null });
  await until("pushes", function () { return messages.length >= 1 && events.length >= 1; });

  const before = await api("counts", function (cb) { bc.messaging.getMessageCounts(cb); });
  const page = await api("page", function (cb) {
    bc.messaging.getMessagesPage({ pagination: { rowsPerPage: 10, pageNumber: 1 },
      searchCriteria: { msgbox: "inbox" }, sortCriteria: { mbCr: -1 } }, cb);
  });
  const marked = await api("mark read", function (cb) {
    bc.messaging.markMessagesRead("inbox", [sent.msgId], cb);
  });
  const after = await api("counts after", function (cb) { bc.messaging.getMessageCounts(cb); });
  if (env.BC_PIGGYBACK) {
    await until("piggybacked event", function () { return piggybacked.length >= 1; });
  }
  const evId = events[0].data.evId;
  const deleted = await api("delete event", function (cb) {
    bc.event.deleteIncomingEvent(evId, cb);
  });

  bc.rttService.disableRTT();
  const again = await api("re-authenticate", function (cb) { bc.authenticateAnonymous(cb); });

  console.log(JSON.stringify({
    ok: true,
    version: require("braincloud/package.json").version,
    first: first,
    anonymousId: anonymousId,
    storedAnonymousId: bc.getStoredAnonymousId(),
    connected: connected,
    sentMsgId: sent.msgId,
    messages: messages,
    events: events,
    piggybacked: piggybacked,
    deleted: deleted,
    before: before,
    page: page,
    marked: marked,
    after: after,
    rttStatus: bc.rttService.getConnectionStatus(),
    again: again,
  }));
  process.exit(0);
}

main().catch(function (e) { fail("main", String(e && e.stack ? e.stack : e)); });
