// A bare TCP relay: every byte from the client to the broker and back, nothing read, parsed,
// hashed or audited. The kafka suite runs the Java tools through it beside the gateway, so a
// ratio can be read against what any extra hop costs on this machine (two more socket copies
// per byte and one more process on the same cores), the ceiling of any proxy here.
// Usage: node bench/servers/relay.ts --port N --to host:port
import { createServer, connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { port: { type: 'string' }, to: { type: 'string' } } });
const [host, port] = (args.to ?? '').split(':');
if (!args.port || !host || !port) throw new Error('usage: relay.ts --port N --to host:port');

createServer({ noDelay: true }, (client) => {
  const broker = connect({ host, port: Number(port), noDelay: true });
  client.pipe(broker);
  broker.pipe(client);
  client.on('error', () => broker.destroy());
  broker.on('error', () => client.destroy());
  client.on('close', () => broker.destroy());
  broker.on('close', () => client.destroy());
}).listen(Number(args.port), '127.0.0.1', () => console.log(`relay on 127.0.0.1:${args.port} -> ${args.to}`));
