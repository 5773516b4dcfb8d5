// Runs one Node.js Redis client with its default options against the proxy
// (and node-redis' client-side cache, which needs its one option):
//
//	node clients.js <client> <host:port>
//
// where <client> is redis4, redis6, ioredis5 or ioredis6 (the npm aliases in
// package.json). It exits non-zero, with the error printed, on the first
// failure. Its last line is "scan: " and the JSON array of every key SCAN
// returned, for the Go test to compare with what the servers hold.
'use strict';
const assert = require('assert');

const [which, addr] = process.argv.slice(2);
const [host, port] = addr.split(':');

// A client that never answers must not hang the test.
setTimeout(() => {
  console.error(`${which}: still running after 60s`);
  process.exit(2);
}, 60000).unref();

const seeded = 300; // keys spread over every server, so SCAN needs several calls

async function ioredis(Redis) {
  const r = new Redis({ host, port: Number(port) });
  const other = r.duplicate();
  try {
    assert.strictEqual(await r.ping(), 'PONG');
    assert.strictEqual(await r.set('a', '1'), 'OK');
    assert.strictEqual(await r.get('a'), '1');
    await r.mset('b', '2', 'c', '3');
    assert.deepStrictEqual(await r.mget('a', 'b', 'c', 'none'), ['1', '2', '3', null]);

    const piped = await r.pipeline().set('p', 'v').get('p').incr('n').mget('a', 'p').exec();
    assert.deepStrictEqual(piped, [[null, 'OK'], [null, 'v'], [null, 1], [null, ['1', 'v']]]);

    const tx = await r.multi().set('{t}x', '1').incr('{t}y').get('{t}x').exec();
    assert.deepStrictEqual(tx, [[null, 'OK'], [null, 1], [null, '1']]);

    assert.deepStrictEqual((await r.keys('[abc]')).sort(), ['a', 'b', 'c']);
    await assert.rejects(r.time(), /time/);
    assert.strictEqual(await r.del('a', 'b', 'c'), 3);
    assert.strictEqual(await r.exists('a', 'p', 'p'), 2);

    // BLPOP on one connection, woken by RPUSH on another.
    const popped = r.blpop('list', 10);
    await sleep(200);
    assert.strictEqual(await other.rpush('list', 'x'), 1);
    assert.deepStrictEqual(await popped, ['list', 'x']);

    // A subscriber hears a publish on channels of every server, and a
    // pattern.
    const sub = r.duplicate();
    const heard = [];
    const all = new Promise((resolve) => {
      const got = (ch, msg) => { heard.push(`${ch}=${msg}`); if (heard.length === 4) resolve(); };
      sub.on('message', got);
      sub.on('pmessage', (pattern, ch, msg) => got(ch, msg));
    });
    await sub.subscribe('news:1', 'news:2', 'news:3');
    await sub.psubscribe('alert:*');
    for (const ch of ['news:1', 'news:2', 'news:3', 'alert:x']) assert.strictEqual(await r.publish(ch, 'hi'), 1);
    await all;
    assert.deepStrictEqual(heard.sort(), ['alert:x=hi', 'news:1=hi', 'news:2=hi', 'news:3=hi']);
    sub.disconnect();

    const pipe = r.pipeline();
    for (let i = 0; i < seeded; i++) pipe.set(`k:${i}`, String(i));
    for (const [err] of await pipe.exec()) assert.ifError(err);

    const keys = [];
    await new Promise((resolve, reject) => {
      const s = r.scanStream({ count: 50 });
      s.on('data', (batch) => keys.push(...batch));
      s.on('error', reject);
      s.on('end', resolve);
    });
    return keys;
  } finally {
    r.disconnect();
    other.disconnect();
  }
}

async function nodeRedis({ createClient }) {
  const c = createClient({ url: `redis://${host}:${port}` });
  c.on('error', (e) => { console.error(`${which}:`, e); });
  await c.connect();
  const other = c.duplicate();
  other.on('error', (e) => { console.error(`${which} (second connection):`, e); });
  await other.connect();
  try {
    assert.strictEqual(await c.ping(), 'PONG');
    assert.strictEqual(await c.set('a', '1'), 'OK');
    assert.strictEqual(await c.get('a'), '1');
    await c.mSet(['b', '2', 'c', '3']);
    assert.deepStrictEqual(await c.mGet(['a', 'b', 'c', 'none']), ['1', '2', '3', null]);

    // Commands sent in one tick go out as one pipeline; execAsPipeline
    // sends a batch without MULTI.
    const tick = await Promise.all([c.set('p', 'v'), c.get('p'), c.incr('n'), c.mGet(['a', 'p'])]);
    assert.deepStrictEqual(tick, ['OK', 'v', 1, ['1', 'v']]);
    const piped = await c.multi().set('q', 'w').get('q').execAsPipeline();
    assert.deepStrictEqual(piped, ['OK', 'w']);

    const tx = await c.multi().set('{t}x', '1').incr('{t}y').get('{t}x').exec();
    assert.deepStrictEqual(tx, ['OK', 1, '1']);

    assert.deepStrictEqual((await c.keys('[abc]')).sort(), ['a', 'b', 'c']);
    await assert.rejects(c.sendCommand(['TIME']), /time/);
    assert.strictEqual(await c.del(['a', 'b', 'c']), 3);
    assert.strictEqual(await c.exists(['a', 'p', 'p']), 2);

    const info = parseInfo(await c.info());
    assert.match(info.server.redis_version, /^\d+\.\d+\.\d+$/);
    assert.ok('connected_clients' in info.clients, 'INFO has no clients section');
    assert.ok('keyspace' in info, 'INFO has no keyspace section');

    // BLPOP on one connection, woken by RPUSH on another.
    const popped = other.blPop('list', 10);
    await sleep(200);
    assert.strictEqual(await c.rPush('list', 'x'), 1);
    assert.deepStrictEqual({ ...(await popped) }, { key: 'list', element: 'x' });

    // The default protocol: RESP2 for node-redis 4, RESP3 for 5 and later.
    const resp = which === 'redis4' ? 2 : 3;
    assert.match(String(await c.sendCommand(['CLIENT', 'INFO'])), new RegExp(` resp=${resp} `));

    // A subscriber on its own connection hears a publish on channels of
    // every server, and a pattern.
    const sub = c.duplicate();
    sub.on('error', (e) => { console.error(`${which} (subscriber):`, e); });
    await sub.connect();
    const heard = [];
    const all = new Promise((resolve) => {
      const got = (msg, ch) => { heard.push(`${ch}=${msg}`); if (heard.length === 4) resolve(); };
      Promise.all([sub.subscribe(['news:1', 'news:2', 'news:3'], got), sub.pSubscribe('alert:*', got)]).then(async () => {
        for (const ch of ['news:1', 'news:2', 'news:3', 'alert:x']) assert.strictEqual(await c.publish(ch, 'hi'), 1);
      });
    });
    await all;
    assert.deepStrictEqual(heard.sort(), ['alert:x=hi', 'news:1=hi', 'news:2=hi', 'news:3=hi']);
    await sub.quit();

    if (resp === 3) await nodeRedisCache(createClient, c);

    const sets = [];
    for (let i = 0; i < seeded; i++) sets.push(c.set(`k:${i}`, String(i)));
    await Promise.all(sets);

    // The pool's keyspace is every server's, summed.
    const dbsize = await c.dbSize();
    assert.ok(dbsize >= seeded, `DBSIZE ${dbsize}`);
    const keyspace = parseInfo(await c.info('keyspace')).keyspace;
    assert.match(keyspace.db0, new RegExp(`^keys=${dbsize},expires=0,avg_ttl=0$`));

    const keys = [];
    // node-redis 4 yields one key at a time, 5 and later a batch of keys.
    for await (const got of c.scanIterator({ COUNT: 50 })) {
      keys.push(...(Array.isArray(got) ? got : [got]));
    }
    return keys;
  } finally {
    await c.quit();
    await other.quit();
  }
}

// nodeRedisCache checks node-redis' client-side cache (RESP3 and
// clientSideCache, its only options here): a second GET is a hit, and a
// write by another client reaches the cache as an invalidation.
async function nodeRedisCache(createClient, writer) {
  const cached = createClient({ url: `redis://${host}:${port}`, RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } });
  cached.on('error', (e) => { console.error(`${which} (cached):`, e); });
  await cached.connect();
  try {
    for (const k of ['csc:1', 'csc:2', 'csc:3']) {
      await writer.set(k, 'old');
      assert.strictEqual(await cached.get(k), 'old');
      const before = cached.clientSideCache.stats().hitCount;
      assert.strictEqual(await cached.get(k), 'old');
      assert.strictEqual(cached.clientSideCache.stats().hitCount, before + 1, `second GET ${k} was not a cache hit`);
      await writer.set(k, 'new');
      for (let i = 0; ; i++) {
        if (await cached.get(k) === 'new') break;
        assert.ok(i < 1000, `GET ${k} still old after the write`);
        await sleep(10);
      }
    }
  } finally {
    await cached.quit();
  }
}

// parseInfo reads INFO's text into {section: {field: value}}, section
// names in lower case, and checks every line is a section header, a
// field or empty.
function parseInfo(text) {
  assert.strictEqual(typeof text, 'string', 'INFO is not a string');
  const sections = {};
  let cur = null;
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    if (line.startsWith('# ')) {
      cur = sections[line.slice(2).toLowerCase()] = {};
      continue;
    }
    const i = line.indexOf(':');
    assert.ok(cur && i > 0, `INFO line ${JSON.stringify(line)} is not "field:value" in a section`);
    cur[line.slice(0, i)] = line.slice(i + 1);
  }
  return sections;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const clients = {
  redis4: () => nodeRedis(require('redis4')),
  redis6: () => nodeRedis(require('redis6')),
  ioredis5: () => ioredis(require('ioredis5')),
  ioredis6: () => ioredis(require('ioredis6')),
};

(async () => {
  const run = clients[which];
  if (!run) throw new Error(`unknown client ${which}: want one of ${Object.keys(clients).join(', ')}`);
  const keys = await run();
  const seen = new Set();
  for (const k of keys) {
    assert.ok(!seen.has(k), `SCAN returned ${k} twice`);
    seen.add(k);
  }
  console.log('scan: ' + JSON.stringify(keys));
})().catch((e) => {
  console.error(`${which}:`, e);
  process.exit(1);
});
