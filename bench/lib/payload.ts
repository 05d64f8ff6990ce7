// Request bodies of the HTTP suite: one REST v3 record whose value is realistic event JSON
// of an exact size with one Luhn-valid card number in it, so the masking rule fires on
// every request (one match per record, checked against the audit rows).

export const CARD = '4111 1111 1111 1111';

/** Deterministic event JSON of exactly `bytes` bytes (as JSON.stringify renders it). */
export function eventJson(bytes: number): unknown {
  const items: Array<Record<string, unknown>> = [];
  const event: Record<string, unknown> = {
    id: '0192f7a4-5c1e-7d2b-9a41-3f6e8c0d1b27',
    type: 'payment.authorized',
    ts: '2025-11-24T10:15:30.123Z',
    merchant: { id: 'm_20931', name: 'Café Nordlicht GmbH', mcc: '5812', country: 'DE' },
    customer: { id: 'u_48213907', email: 'jane.doe@example.com', ip: '10.42.17.3', agent: 'okhttp/4.12.0' },
    payment: { method: 'card', pan: CARD, exp: '09/28', amount: { value: 73.4, currency: 'EUR' } },
    items,
    note: '',
  };
  const item = (i: number) => ({ sku: `SKU-${String(100000 + i * 7919).slice(-6)}`, name: `item ${i} größe M`, qty: 1 + (i % 3), price: 9.9 + i });
  // grow with line items, then pad the note to hit the size exactly
  for (let i = 0; Buffer.byteLength(JSON.stringify(event)) + 120 < bytes; i++) items.push(item(i));
  const missing = bytes - Buffer.byteLength(JSON.stringify(event));
  if (missing < 0) throw new Error(`cannot build an event of ${bytes} bytes`);
  const words = 'order shipped warehouse retry status ok ';
  event.note = words.repeat(Math.ceil(missing / words.length)).slice(0, missing);
  if (Buffer.byteLength(JSON.stringify(event)) !== bytes) throw new Error('event size mismatch');
  return event;
}

/** A single-record REST v3 produce body whose value is `valueBytes` bytes of event JSON. */
export function produceBody(valueBytes: number): string {
  return JSON.stringify({ key: { type: 'STRING', data: 'order-48213907' }, value: { type: 'JSON', data: eventJson(valueBytes) } });
}
