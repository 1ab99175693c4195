// cluster_produce_failover.js — a kafkajs 2.2.4 idempotent producer through a partition-leader
// failover, driven by tests/integration/test_cluster_replication.py.
// Usage: node cluster_produce_failover.js <brokers,...> <topic> <n> <ctl path>
// Sends n records (values "k000000".., 10 per send, partition 0, acks=all). Once a third is
// acknowledged it creates <ctl>.half and sends on: the test kills the partition leader then,
// mid-stream (kafkajs retries through the leader change). Prints one JSON object: per
// acknowledged send [baseOffset, count, first index], and the errors of sends that failed for
// good. Exits 1 on an unexpected error.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [brokers, topic, nText, ctl] = process.argv.slice(2);
const n = parseInt(nText, 10);
const watchdog = setTimeout(() => {
  console.error('watchdog: scenario took too long');
  process.exit(2);
}, 110000);

const kafka = new Kafka({
  clientId: 'ailurus-it-pf',
  brokers: brokers.split(','),
  logLevel: process.env.PF_JS_LOG ? logLevel.INFO : logLevel.NOTHING,
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
});

async function main() {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const acked = [];
  const errors = [];
  for (let i = 0; i < n; i += 10) {
    const messages = [];
    for (let k = i; k < Math.min(i + 10, n); k++) {
      messages.push({ value: 'k' + String(k).padStart(6, '0') });
    }
    try {
      const res = await producer.send({ topic, acks: -1, messages, timeout: 30000 });
      for (const r of res) {
        if (r.partition === 0 && r.errorCode === 0) {
          acked.push([Number(r.baseOffset), messages.length, i]);
        } else {
          errors.push('send ' + i + ': ' + JSON.stringify(r));
        }
      }
    } catch (e) {
      errors.push('send ' + i + ': ' + (e && e.message ? e.message : String(e)));
    }
    if (i + 10 >= n / 3 && i < n / 3) fs.writeFileSync(ctl + '.half', ''); /* kill now */
  }
  await producer.disconnect();
  clearTimeout(watchdog);
  console.log(JSON.stringify({ acked, errors }));
}

main().catch((e) => {
  console.error('scenario failed:', e && e.stack ? e.stack : e);
  process.exit(1);
});
