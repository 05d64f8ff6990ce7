import type { Logger } from 'pino';
import { request } from 'undici';
import type { ApprovalsConfig } from './schema.ts';

/**
 * Tells a configured URL about new approval requests (JSON POST). Runs beside the data
 * path, never in it: a slow or failing receiver delays nothing, is retried a bounded
 * number of times with backoff, and is logged when it gives up.
 */
export class Webhook {
  readonly #config: () => ApprovalsConfig['webhook'];
  readonly #log: Logger;
  readonly #abort = new AbortController();

  constructor(config: () => ApprovalsConfig['webhook'], log: Logger) {
    this.#config = config;
    this.#log = log;
  }

  notify(body: unknown): void {
    const config = this.#config();
    if (!config || this.#abort.signal.aborted) return;
    void this.#send(config, JSON.stringify(body));
  }

  async #send(config: NonNullable<ApprovalsConfig['webhook']>, body: string): Promise<void> {
    let problem = '';
    for (let attempt = 1; attempt <= config.attempts; attempt++) {
      if (attempt > 1) await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 2)).unref());
      if (this.#abort.signal.aborted) return;
      try {
        const res = await request(config.url, {
          method: 'POST',
          headers: { ...config.headers, 'content-type': 'application/json', 'user-agent': 'streamgate-approvals' },
          body,
          headersTimeout: config.timeoutMs,
          bodyTimeout: config.timeoutMs,
          signal: this.#abort.signal,
        });
        await res.body.dump();
        if (res.statusCode < 300) return;
        problem = `HTTP ${res.statusCode}`;
        if (res.statusCode < 500 && res.statusCode !== 429) break; // the receiver refuses this body: retrying will not help
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    if (!this.#abort.signal.aborted) this.#log.warn({ url: config.url, problem }, 'approval webhook not delivered');
  }

  close(): void {
    this.#abort.abort();
  }
}
