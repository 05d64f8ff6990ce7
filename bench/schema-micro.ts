// Where the schema path's time goes, in process: one batch of ~1 KiB events as Avro and as JSON
// through inspectEncoded (decode, view, engine, rebuild, re-encode, hash) on this thread.
import avro from 'avsc';
import { createRecordsBatch } from '../node_modules/@platformatic/kafka/dist/protocol/records.js';
import { parseConfig } from '../src/config/load.ts';
import { inspectEncoded, type EncodedTask } from '../src/inspect/encoded.ts';
import { WasmEngine } from '../src/inspect/engine.ts';
import { RuleBook } from '../src/inspect/rules.ts';
import type { RegisteredSchema } from '../src/schemas/source.ts';
import { BENCH_EVENT_SCHEMA, variedRecords } from './suites/kafka.ts';

const book = new RuleBook(parseConfig(`
listeners: { http: { port: 1 } }
upstream: { kind: ack }
identity: { issuers: [{ issuer: "http://127.0.0.1:1", jwksUri: "http://127.0.0.1:1/jwks", audience: a }] }
policy: { roles: {}, grants: [] }
schemas: { catalog: { dir: ".", schemas: [{ id: 1, subject: s, file: package.json }] } }
inspection:
  rules:
    - { id: card, detector: payment-card, action: { type: mask, keepLast: 4 } }
  topics:
    - { topics: ["a"], schema: { required: true }, produce: [card] }
    - { topics: ["j"], format: json, produce: [card] }
`).inspection);
const engine = WasmEngine.load(book.program.bytes);
const events = variedRecords(500, 1024).map((j) => JSON.parse(j));
const type = avro.Type.forSchema(BENCH_EVENT_SCHEMA as avro.Schema);
const head = Buffer.from([0, 0, 0, 0, 1]);
const schema: RegisteredSchema = { id: 1, type: 'AVRO', schema: JSON.stringify(BENCH_EVENT_SCHEMA), references: [], resolved: new Map() };
const batch = (values: Buffer[]) => createRecordsBatch(values.map((value) => ({ topic: 't', partition: 0, value, headers: new Map(), timestamp: 0n })) as never, { compression: 'lz4' } as never).buffer;
const avroBatch = batch(events.map((e) => Buffer.concat([head, type.toBuffer(e)])));
const jsonBatch = batch(events.map((e) => Buffer.from(JSON.stringify(e))));
const a = book.rulesFor('a', 'produce')!;
const j = book.rulesFor('j', 'produce')!;
const rounds = Number(process.argv[2] ?? 200);
/** `only`: run one of the two (for a profile of that path alone) */
const only = process.argv[3];
const tasks: Array<[string, EncodedTask]> = [
  ['avro', { format: 'kafka', parts: [avroBatch], ruleset: a.ruleset, values: a.values, schemaEpoch: 'e', schemas: [schema] }],
  ['json', { format: 'kafka', parts: [jsonBatch], ruleset: j.ruleset }],
];
for (const [name, task] of tasks.filter(([n]) => !only || n === only)) {
  for (let i = 0; i < 20; i++) inspectEncoded(engine, task);
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) inspectEncoded(engine, task);
  const us = ((performance.now() - t0) * 1000) / rounds / 500;
  console.log(`${name}: ${us.toFixed(2)} µs per record`);
}
