// Runs ioredis and node-redis with their default options against the
// address in process.argv[2] and exits non-zero on the first failure.
'use strict';
const assert = require('assert');
const Redis = require('ioredis');
const { createClient } = require('redis');

const [host, port] = process.argv[2].split(':');

async function ioredis() {
  const r = new Redis({ host, port: Number(port), maxRetriesPerRequest: 1 });
  try {
    assert.strictEqual(await r.ping(), 'PONG');
    await r.set('io:a', '1');
    assert.strictEqual(await r.get('io:a'), '1');
    await r.mset('io:b', '2', 'io:c', '3');
    assert.deepStrictEqual(await r.mget('io:a', 'io:b', 'io:c', 'io:none'), ['1', '2', '3', null]);
    const res = await r.multi().set('{io}x', '1').incr('{io}y').exec();
    assert.deepStrictEqual(res, [[null, 'OK'], [null, 1]]);
    const piped = await r.pipeline().set('io:p', 'v').get('io:p').exec();
    assert.deepStrictEqual(piped, [[null, 'OK'], [null, 'v']]);
    assert.deepStrictEqual((await r.keys('io:*')).sort(), ['io:a', 'io:b', 'io:c', 'io:p']);
    await assert.rejects(r.time(), /time/);
    assert.strictEqual(await r.del('io:a', 'io:b', 'io:c'), 3);
  } finally {
    r.disconnect();
  }
}

async function nodeRedis() {
  const c = createClient({ url: `redis://${host}:${port}` });
  c.on('error', (e) => { console.error('node-redis:', e); });
  await c.connect();
  try {
    assert.strictEqual(await c.ping(), 'PONG');
    await c.set('nr:a', '1');
    assert.strictEqual(await c.get('nr:a'), '1');
    assert.deepStrictEqual(await c.mGet(['nr:a', 'nr:none']), ['1', null]);
    const res = await c.multi().set('{nr}x', '1').incr('{nr}y').exec();
    assert.deepStrictEqual(res, ['OK', 1]);
    assert.strictEqual(await c.exists(['nr:a', 'nr:none', 'nr:a']), 2);
  } finally {
    await c.quit();
  }
}

(async () => {
  await ioredis();
  await nodeRedis();
  console.log('ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
