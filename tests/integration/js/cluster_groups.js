// cluster_groups.js — a kafkajs 2.2.4 consumer group through a group-coordinator failover,
// driven by tests/integration/test_cluster_groups.py.
// Usage: node cluster_groups.js <brokers,...> <topic> <group> <n> <ctl path> <ends json>
// Consumes the topic's n distinct records (values), committing every 20 records. Once a third
// is consumed and committed it creates <ctl>.half and waits (bounded) for <ctl>.go: the test
// kills the coordinator in between. It then reads on to the end offsets (ends: partition ->
// offset), commits there and prints one JSON object: distinct values, deliveries, re-reads
// below an offset committed before the kill (must be 0), commit errors. Exits 1 on an error.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [brokers, topic, group, nText, ctl, endsText] = process.argv.slice(2);
const n = parseInt(nText, 10);
const ends = JSON.parse(endsText);
const watchdog = setTimeout(() => {
  console.error('watchdog: scenario took too long');
  process.exit(2);
}, 110000);

const kafka = new Kafka({
  clientId: 'ailurus-it-cg',
  brokers: brokers.split(','),
  logLevel: process.env.CG_JS_LOG ? logLevel.INFO : logLevel.ERROR,
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const consumer = kafka.consumer({
    groupId: group, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 20000,
    maxWaitTimeInMs: 200, retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const seen = new Set();
  const next = {};       // partition -> offset after the last delivered record
  const committed = {};  // partition -> highest offset committed successfully
  let atKill = null;
  let deliveries = 0;
  let belowCommitted = 0;
  let sinceCommit = 0;
  let commitErrors = 0;
  let finished;
  const done = new Promise((r) => { finished = r; });

  async function commit() {
    const offsets = Object.keys(next).map((p) => (
      { topic, partition: Number(p), offset: String(next[p]) }));
    try {
      await consumer.commitOffsets(offsets);
      for (const o of offsets) {
        committed[o.partition] = Math.max(committed[o.partition] || 0, Number(o.offset));
      }
      sinceCommit = 0;
      return true;
    } catch (e) {
      commitErrors++; // the coordinator is moving: try again 20 records later
      sinceCommit = 0;
      return false;
    }
  }

  const atEnd = () => Object.keys(ends).every((p) => (next[p] || 0) >= ends[p]);

  const status = setInterval(() => {
    console.error(JSON.stringify({ t: Date.now(), seen: seen.size, next, committed, atKill,
      commitErrors }));
  }, 2000);
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      const off = Number(message.offset);
      deliveries++;
      if (atKill !== null && off < (atKill[partition] || 0)) belowCommitted++;
      seen.add(message.value.toString());
      next[partition] = off + 1;
      if (++sinceCommit >= 20) await commit();
      if (atKill === null && seen.size >= n / 3 && Object.keys(committed).length > 0) {
        atKill = Object.assign({}, committed);
        fs.writeFileSync(ctl + '.half', 'half');
        for (let i = 0; i < 600 && !fs.existsSync(ctl + '.go'); i++) await sleep(100);
      }
      if (seen.size === n && atEnd()) finished();
    },
  });
  await done;
  clearInterval(status);
  let ok = false;
  for (let i = 0; i < 40 && !ok; i++) {
    ok = await commit();
    if (!ok) await sleep(250);
  }
  await consumer.disconnect();
  clearTimeout(watchdog);
  console.log(JSON.stringify({
    distinct: seen.size, deliveries, belowCommitted, commitErrors, finalCommit: ok,
    atKill, committed,
  }));
  if (!ok) process.exit(1);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
