// Connects with ioredis 5 and 6, default options, to the proxy at
// process.argv[2] and SETs the key process.argv[3], whose server is up
// while another of the pool is down. ioredis sends INFO as it connects
// (its ready check) and gives up the connection when INFO is an error.
'use strict';
const assert = require('assert');

const [addr, key] = process.argv.slice(2);
const [host, port] = addr.split(':');

setTimeout(() => {
  console.error('still running after 30s');
  process.exit(2);
}, 30000).unref();

(async () => {
  for (const name of ['ioredis5', 'ioredis6']) {
    const Redis = require(name);
    const r = new Redis({ host, port: Number(port) });
    r.on('error', (e) => console.error(`${name}:`, e.message));
    try {
      assert.strictEqual(await r.set(key, name), 'OK', name);
      assert.strictEqual(await r.get(key), name, name);
    } finally {
      r.disconnect();
    }
  }
  console.log('ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
