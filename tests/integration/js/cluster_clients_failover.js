// cluster_clients_failover.js — a kafkajs 2.2.4 idempotent producer (acks=all) and a kafkajs
// consumer group, both running while a partition leader (and the group's coordinator) is
// SIGKILLed or drained; driven by tests/integration/test_cluster_client_failover.py (issue 7).
// Usage: node cluster_clients_failover.js <brokers,...> <topic> <partitions> <group> <n> <ctl>
// The producer sends n records (values "v000000".., 10 per send, send k to partition
// k % partitions, one request in flight). The consumer group (subscribed from the beginning,
// committing every 50 records) reads meanwhile. Once a third of the sends is acknowledged and
// the consumer has read something, the script creates <ctl>.half and waits (up to 30 s) for
// <ctl>.go: the test kills or drains the leader of partition 0 in between. Then it sends the
// rest. The consumer reads until it has seen every acknowledged value (bounded). Prints one
// JSON object: acked sends [partition, baseOffset, count, first index], producer errors
// (sends that failed for good), consumed [partition, offset, value], consumer crash events
// (kafkajs restarts the consumer after a retriable one), group joins (GROUP_JOIN events) and
// commit errors. Exits 1 on an unexpected error, 2 on the watchdog.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [brokers, topic, partsText, group, nText, ctl] = process.argv.slice(2);
const parts = parseInt(partsText, 10);
const n = parseInt(nText, 10);
const watchdog = setTimeout(() => {
  console.error('watchdog: scenario took too long');
  process.exit(2);
}, 110000);

const kafka = new Kafka({
  clientId: 'ailurus-it-cf',
  brokers: brokers.split(','),
  logLevel: { debug: logLevel.DEBUG, info: logLevel.INFO }[process.env.CF_JS_LOG] ||
    logLevel.NOTHING,
  // every level to stderr: stdout carries the result only
  logCreator: () => ({ namespace, level, log }) => {
    const { timestamp, message, stack, logger, ...rest } = log;
    // the first frames of a stack say which request failed (heartbeat, fetch, join...)
    const where = stack ? String(stack).split('\n').slice(0, 6).join(' | ') : undefined;
    process.stderr.write(JSON.stringify({ t: timestamp, level, namespace, msg: message,
      ...rest, stack: where }) + '\n');
  },
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer({
    groupId: group, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 20000,
    // kafkajs keeps the group's coordinator (a Broker object) and, on a connection error,
    // only reconnects to that address (no FindCoordinator) until the runner's retries are
    // spent; then the consumer crashes with restart: true, rejoins and finds the new
    // coordinator (see test_cluster_client_failover.py). 5 retries is kafkajs's default; the
    // short backoff makes that take ~4 s instead of ~10 s.
    maxWaitTimeInMs: 200, retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const acked = [];
  const errors = [];
  const consumed = [];
  const seen = new Set();
  const crashes = [];
  let commitErrors = 0;
  let sinceCommit = 0;
  let joins = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => { joins++; });
  consumer.on(consumer.events.CRASH, (e) => {
    crashes.push({ error: String(e.payload.error && e.payload.error.message),
      restart: e.payload.restart });
  });

  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      const v = message.value.toString();
      consumed.push([partition, Number(message.offset), v]);
      seen.add(v);
      if (++sinceCommit >= 50) {
        sinceCommit = 0;
        try {
          await consumer.commitOffsets([{ topic, partition,
            offset: String(Number(message.offset) + 1) }]);
        } catch (e) {
          commitErrors++; // the coordinator may have been on the killed node: later again
        }
      }
    },
  });

  const sends = Math.ceil(n / 10);
  let halfSent = false;
  for (let s = 0; s < sends; s++) {
    const i = s * 10;
    const partition = s % parts;
    const messages = [];
    for (let k = i; k < Math.min(i + 10, n); k++) {
      messages.push({ partition, value: 'v' + String(k).padStart(6, '0') });
    }
    try {
      const res = await producer.send({ topic, acks: -1, messages, timeout: 30000 });
      for (const r of res) {
        if (r.partition === partition && r.errorCode === 0) {
          acked.push([partition, Number(r.baseOffset), messages.length, i]);
        } else {
          errors.push('send ' + i + ': ' + JSON.stringify(r));
        }
      }
    } catch (e) {
      errors.push('send ' + i + ': ' + (e && e.message ? e.message : String(e)));
    }
    if (!halfSent && s + 1 >= sends / 3) {
      for (let w = 0; w < 300 && consumed.length === 0; w++) await sleep(100);
      fs.writeFileSync(ctl + '.half', ''); // the test kills/drains partition 0's leader now
      for (let w = 0; w < 300 && !fs.existsSync(ctl + '.go'); w++) await sleep(100);
      halfSent = true;
    }
  }
  await producer.disconnect();

  const want = [];
  for (const [, , cnt, first] of acked) {
    for (let k = 0; k < cnt; k++) want.push('v' + String(first + k).padStart(6, '0'));
  }
  for (let w = 0; w < 450 && !want.every((v) => seen.has(v)); w++) await sleep(100);
  await consumer.disconnect();
  clearTimeout(watchdog);
  console.log(JSON.stringify({ acked, errors, consumed, crashes, joins, commitErrors }));
}

main().catch((e) => {
  console.error('scenario failed:', e && e.stack ? e.stack : e);
  process.exit(1);
});
