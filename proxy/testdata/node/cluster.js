// Connects in cluster mode, default options, with ioredis' Cluster and
// node-redis' createCluster (process.argv[2] names the package) to the
// proxy at process.argv[3], which answers as a cluster of one node: SET
// and GET of many keys, MGET and a pipeline, with no redirection.
'use strict';
const assert = require('assert');

const [name, addr] = process.argv.slice(2);
const [host, port] = addr.split(':');
const keys = Array.from({ length: 200 }, (_, i) => `nc:${name}:${i}`);

setTimeout(() => {
  console.error('still running after 60s');
  process.exit(2);
}, 60000).unref();

async function ioredisCluster({ Cluster }) {
  const c = new Cluster([{ host, port: Number(port) }]);
  c.on('error', (e) => console.error(`${name}:`, e.message));
  try {
    for (const k of keys.slice(0, 50)) {
      assert.strictEqual(await c.set(k, `v${k}`), 'OK', k);
      assert.strictEqual(await c.get(k), `v${k}`, k);
    }
    const p = c.pipeline();
    for (const k of keys.slice(50)) p.set(k, `v${k}`);
    for (const [err] of await p.exec()) assert.ifError(err);
    // ioredis' Cluster refuses keys of different slots in one command
    // itself, so MGET keys that share a hash tag.
    assert.strictEqual(await c.mset('{t}a', '1', '{t}b', '2'), 'OK');
    assert.deepStrictEqual(await c.mget('{t}a', '{t}b', '{t}c'), ['1', '2', null]);
    for (const k of keys) assert.strictEqual(await c.get(k), `v${k}`, k);
    const nodes = c.nodes('master').map((n) => `${n.options.host}:${n.options.port}`);
    assert.deepStrictEqual(nodes, [addr]);
  } finally {
    c.disconnect();
  }
}

async function nodeRedisCluster({ createCluster }) {
  const c = createCluster({ rootNodes: [{ url: `redis://${host}:${port}` }] });
  c.on('error', (e) => console.error(`${name}:`, e.message));
  await c.connect();
  try {
    for (const k of keys) {
      assert.strictEqual(await c.set(k, `v${k}`), 'OK', k);
      assert.strictEqual(await c.get(k), `v${k}`, k);
    }
    const all = await Promise.all(keys.map((k) => c.get(k)));
    assert.deepStrictEqual(all, keys.map((k) => `v${k}`));
    assert.deepStrictEqual(await c.mGet(['{t}a', '{t}b']), [null, null]);
    assert.deepStrictEqual(c.masters.map((n) => `${n.host}:${n.port}`), [addr]);
  } finally {
    await c.quit();
  }
}

const clients = {
  redis4: () => nodeRedisCluster(require('redis4')),
  redis6: () => nodeRedisCluster(require('redis6')),
  ioredis5: () => ioredisCluster(require('ioredis5')),
  ioredis6: () => ioredisCluster(require('ioredis6')),
};

clients[name]().then(() => console.log('ok'), (e) => {
  console.error(e);
  process.exit(1);
});
