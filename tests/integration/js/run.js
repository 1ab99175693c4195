// run.js — kafkajs 2.2.4 scenarios against an Ailurus broker, driven by
// tests/integration/test_kafkajs.py. Usage: node run.js <scenario> <host:port>
// Prints one JSON object (the scenario's observations) on stdout; exits 1 on an error.
// Every wait is bounded (timeouts on the client and a global watchdog).
'use strict';

const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const [scenario, broker] = process.argv.slice(2);
const watchdog = setTimeout(() => {
  console.error('watchdog: scenario took too long');
  process.exit(2);
}, 90000);

const kafka = new Kafka({
  clientId: 'ailurus-it',
  brokers: [broker],
  logLevel: logLevel.NOTHING,
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 5, initialRetryTime: 100 },
});

async function admin() {
  const a = kafka.admin();
  await a.connect();
  const out = {};
  out.created = await a.createTopics({
    waitForLeaders: true,
    topics: [
      { topic: 'js-a', numPartitions: 3, replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: '86400000' }] },
      { topic: 'js-b', numPartitions: 1 },
    ],
  });
  out.createdAgain = await a.createTopics({ topics: [{ topic: 'js-a', numPartitions: 3 }] });
  try {
    await a.createTopics({
      topics: [{ topic: 'js-bad', configEntries: [{ name: 'bogus.key', value: '1' }] }],
    });
    out.badConfig = 'accepted';
  } catch (e) {
    out.badConfig = e.type || (e.errors && e.errors[0] && e.errors[0].type) || String(e);
  }
  const md = await a.fetchTopicMetadata({ topics: ['js-a'] });
  out.partitions = md.topics[0].partitions.length;
  out.topics = (await a.listTopics()).sort();
  await a.createPartitions({ topicPartitions: [{ topic: 'js-a', count: 5 }] });
  const md2 = await a.fetchTopicMetadata({ topics: ['js-a'] });
  out.partitionsAfter = md2.topics[0].partitions.length;
  await a.alterConfigs({ validateOnly: false, resources: [{ type: 2, name: 'js-a',
    configEntries: [{ name: 'retention.ms', value: '3600000' }] }] });
  const dc = await a.describeConfigs({ includeSynonyms: false,
    resources: [{ type: 2, name: 'js-a', configNames: ['retention.ms', 'cleanup.policy'] }] });
  out.configs = {};
  for (const e of dc.resources[0].configEntries) out.configs[e.configName] = e.configValue;
  const cl = await a.describeCluster();
  out.brokers = cl.brokers.length;
  out.controller = cl.controller;
  await a.deleteTopics({ topics: ['js-b'] });
  out.topicsAfterDelete = (await a.listTopics()).sort();
  await a.disconnect();
  return out;
}

async function produce() {
  const a = kafka.admin();
  await a.connect();
  await a.createTopics({ waitForLeaders: true, topics: [{ topic: 'js-p', numPartitions: 2 }] });
  const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await p.connect();
  const out = { sent: [] };
  for (let round = 0; round < 4; round++) {
    const messages = [];
    for (let i = 0; i < 25; i++) {
      const n = round * 25 + i;
      messages.push({ key: 'k' + n, value: 'v' + n, partition: n % 2,
        headers: { h: 'x' + n }, timestamp: String(1700000000000 + n) });
    }
    const res = await p.send({ topic: 'js-p', acks: -1, messages,
      compression: round % 2 ? CompressionTypes.GZIP : CompressionTypes.None });
    out.sent.push(res.map(r => ({ p: r.partition, err: r.errorCode, base: r.baseOffset })));
  }
  await p.disconnect();
  const offs = await a.fetchTopicOffsets('js-p');
  out.offsets = offs.map(o => ({ p: o.partition, low: o.low, high: o.high }))
    .sort((x, y) => x.p - y.p);
  const byTs = await a.fetchTopicOffsetsByTimestamp('js-p', 1700000000050);
  out.byTimestamp = byTs.map(o => ({ p: o.partition, off: o.offset })).sort((x, y) => x.p - y.p);
  await a.disconnect();
  return out;
}

async function consumeGroup() {
  // Needs the consumer-group APIs (JoinGroup ... OffsetCommit): subscribe, eachMessage, seek.
  const topic = 'js-g';
  const a = kafka.admin();
  await a.connect();
  await a.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 2 }] });
  await a.disconnect();
  const p = kafka.producer();
  await p.connect();
  const messages = [];
  for (let n = 0; n < 40; n++) messages.push({ value: 'm' + n, partition: n % 2 });
  await p.send({ topic, acks: -1, messages });
  await p.disconnect();
  const c = kafka.consumer({ groupId: 'js-group', sessionTimeout: 10000, heartbeatInterval: 500 });
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  const seen = [];
  let sought = false;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('consume timed out')), 60000);
    c.run({
      eachMessage: async ({ partition, message }) => {
        seen.push([partition, Number(message.offset), message.value.toString()]);
        if (!sought && seen.length === 40) {
          sought = true;
          c.seek({ topic, partition: 0, offset: '15' });
        } else if (sought && seen.length >= 45) {
          clearTimeout(t);
          resolve();
        }
      },
    }).catch(reject);
  });
  await c.disconnect();
  return { seen };
}

// Dynamic broker configs (tests/integration/test_broker_configs.py): describe, alter (legacy
// AlterConfigs on BROKER "0") and the topic default that follows it.
async function brokerConfigs() {
  const a = kafka.admin();
  await a.connect();
  const BROKER = 4; // ConfigResourceTypes.BROKER
  const TOPIC = 2;
  const entry = async (type, name, key) => {
    const d = await a.describeConfigs({ includeSynonyms: false,
      resources: [{ type, name, configNames: [key] }] });
    const e = d.resources[0].configEntries.find((c) => c.configName === key);
    return { value: e.configValue, source: e.configSource, readOnly: e.readOnly };
  };
  const out = {};
  out.before = await entry(BROKER, '0', 'log.retention.ms');
  await a.createTopics({ topics: [{ topic: 'js-cfg', numPartitions: 1 }] });
  await a.alterConfigs({ validateOnly: false, resources: [{ type: BROKER, name: '0',
    configEntries: [{ name: 'log.retention.ms', value: '3600000' }] }] });
  out.after = await entry(BROKER, '0', 'log.retention.ms');
  const t = await entry(TOPIC, 'js-cfg', 'retention.ms');
  out.topic = { value: t.value, source: t.source };
  try {
    await a.alterConfigs({ validateOnly: false, resources: [{ type: BROKER, name: '0',
      configEntries: [{ name: 'socket.request.max.bytes', value: '1000' }] }] });
    out.readOnlyError = 'accepted';
  } catch (e) {
    out.readOnlyError = e.type || String(e);
  }
  await a.disconnect();
  return out;
}

const scenarios = { admin, produce, consumeGroup, brokerConfigs };

(async () => {
  const fn = scenarios[scenario];
  if (!fn) throw new Error('unknown scenario ' + scenario);
  const out = await fn();
  process.stdout.write(JSON.stringify(out) + '\n');
  clearTimeout(watchdog);
  process.exit(0);
})().catch((e) => {
  console.error('scenario failed:', e && e.stack ? e.stack : e);
  process.exit(1);
});
