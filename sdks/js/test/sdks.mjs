// Sends every Segment call type through the real Node libraries of Segment and RudderStack, pointed at
// a running collector:  node test/sdks.mjs <collector url> <write key> <user prefix>
// The calling test (tests/test_sdks.py) finds the rows in ClickHouse. Exits non-zero on any SDK error.
import { Analytics as Segment } from "@segment/analytics-node";
import Rudder from "@rudderstack/rudder-sdk-node";

const [url, writeKey, prefix] = process.argv.slice(2);

function calls(user) {
  return [
    ["track", { userId: user, event: "Order Completed", properties: { total: 42.5, items: ["a"] } }],
    ["identify", { userId: user, traits: { email: `${user}@example.com`, plan: "pro" } }],
    ["page", { userId: user, category: "Docs", name: "Install", properties: { path: "/install" } }],
    ["screen", { userId: user, name: "Settings", properties: { tab: "privacy" } }],
    ["group", { userId: user, groupId: "acme", traits: { seats: 10 } }],
    ["alias", { userId: user, previousId: `${user}-anonymous` }],
  ];
}

async function segment() {
  const errors = [];
  const client = new Segment({ writeKey, host: url, flushAt: 6, maxRetries: 1 });
  client.on("error", (error) => errors.push(String(error?.reason ?? error)));
  for (const [call, message] of calls(`${prefix}-segment`)) client[call](message);
  await client.closeAndFlush({ timeout: 15000 });
  return errors;
}

async function rudder() {
  const errors = [];
  const client = new Rudder(writeKey, {
    dataPlaneUrl: url, flushAt: 6, maxInternalQueueSize: 100,
    errorHandler: (error) => errors.push(String(error)),
  });
  for (const [call, message] of calls(`${prefix}-rudderstack`)) client[call](message);
  await client.flush();
  return errors;
}

const errors = [...(await segment()), ...(await rudder())];
console.log(JSON.stringify({ errors }));
process.exit(errors.length ? 1 : 0);
