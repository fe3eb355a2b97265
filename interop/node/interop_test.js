// RaftMQ interop scenario on the official Apache RocketMQ 5 Node.js client (npm
// rocketmq-client-nodejs 1.0.8), run by tests/interop.rs against `raftmq dev`.
//
//   node interop_test.js ENDPOINT TOPIC GROUP COUNT
//
// Sends COUNT messages (each with a key and a tag), then receives and acks them with a
// SimpleConsumer; exits 0 when every message came back with its body and key. The client logs
// to $HOME/logs/rocketmq/rocketmq_client_nodejs.log, which the test reads for warnings and errors
// (issue 13, item 7).
'use strict';
const { Producer, SimpleConsumer } = require('rocketmq-client-nodejs');

const [endpoints, topic, group, countArg] = process.argv.slice(2);
const count = Number(countArg);

async function main() {
  const producer = new Producer({ endpoints });
  await producer.startup();
  for (let i = 0; i < count; i++) {
    await producer.send({
      topic,
      tag: 'node',
      keys: [`key-${i}`],
      body: Buffer.from(`node-${i}`),
    });
  }
  console.log(`sent ${count}`);

  const consumer = new SimpleConsumer({
    consumerGroup: group,
    endpoints,
    subscriptions: new Map().set(topic, 'node'),
    awaitDuration: 3000,
  });
  await consumer.startup();
  const seen = new Map();
  const deadline = Date.now() + 60000;
  while (seen.size < count && Date.now() < deadline) {
    const messages = await consumer.receive(32, 30000);
    for (const m of messages) {
      seen.set(m.body.toString(), m.keys);
      await consumer.ack(m);
    }
  }
  let bad = 0;
  for (let i = 0; i < count; i++) {
    const keys = seen.get(`node-${i}`);
    if (!keys || !keys.includes(`key-${i}`)) bad++;
  }
  console.log(`received ${seen.size}, missing or without their key ${bad}`);
  // Both clients share one logger, which the first shutdown closes: the second would print a
  // "log stream had been closed" stack from the client itself. The consumer is shut down (it
  // tells the broker it leaves); the producer ends with the process.
  await consumer.shutdown();
  return bad === 0 && seen.size === count;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (e) => {
    console.error('scenario failed:', e);
    process.exit(2);
  },
);
