import { watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { Gateway, ReloadResult } from '../gateway.ts';
import type { Logger } from '../log.ts';

/**
 * Reads `file` again and applies it. An invalid file (syntax, schema, references, rules
 * that do not compile) is rejected with one error log line naming the problem, and the
 * running configuration stays. Never throws.
 */
export async function reloadFromFile(gateway: Gateway, file: string, log: Logger, adjust: (c: Config) => Config = (c) => c): Promise<ReloadResult | undefined> {
  let next: Config;
  try {
    next = adjust(loadConfig(file));
  } catch (err) {
    gateway.metrics.reloaded('rejected');
    const problem = err instanceof ConfigError ? err.message : (err as Error).message;
    log.error({ file, problem, policy: gateway.policyVersion }, 'config reload rejected: the new file is invalid; the running policy stays active');
    return undefined;
  }
  try {
    const result = await gateway.reload(next);
    if (result.restartNeeded.length > 0) {
      log.warn({ file, sections: result.restartNeeded }, `config reload: changes to ${result.restartNeeded.join(', ')} need a restart and were NOT applied`);
    }
    log.info({ file, applied: result.applied, policy: result.policyVersion }, result.applied.length > 0 ? 'config reloaded' : 'config reloaded: nothing to apply');
    return result;
  } catch (err) {
    gateway.metrics.reloaded('rejected');
    log.error({ file, problem: (err as Error).message, policy: gateway.policyVersion }, 'config reload rejected: the new inspection rules cannot be loaded; the running configuration stays active');
    return undefined;
  }
}

/**
 * Calls `onChange` (debounced) when `file` changes. Watches the directory, not the file:
 * editors and config management replace files by rename, which a watch on the old inode
 * would miss. Returns a function that stops watching.
 */
export function watchConfig(file: string, onChange: () => void, debounceMs = 250): () => void {
  const path = resolve(file);
  const name = basename(path);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(dirname(path), { persistent: false }, (_event, changed) => {
    if (changed !== null && changed !== name) return;
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  });
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}

/**
 * Hot reload for `serve`: changes of the file (or of `alsoWatch`) and SIGHUP reload; reloads run one at a time
 * (a change during a reload triggers one more afterwards). Returns a stop function.
 */
export function serveReloads(gateway: Gateway, file: string, log: Logger, adjust?: (c: Config) => Config, alsoWatch: readonly string[] = []): () => void {
  let running: Promise<unknown> | undefined;
  let again = false;
  const reload = () => {
    if (running) {
      again = true;
      return;
    }
    running = reloadFromFile(gateway, file, log, adjust).finally(() => {
      running = undefined;
      if (again) {
        again = false;
        reload();
      }
    });
  };
  // files the config reads (the protection keyring) reload it too
  const stops = [file, ...alsoWatch].map((f) => watchConfig(f, reload));
  const stopWatching = () => stops.forEach((stop) => stop());
  const onHup = () => {
    log.info({ file }, 'SIGHUP: reloading the configuration');
    reload();
  };
  process.on('SIGHUP', onHup);
  return () => {
    stopWatching();
    process.off('SIGHUP', onHup);
  };
}
