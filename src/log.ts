import { pino, type Logger } from 'pino';

export type { Logger };

/** children of each root logger, so a reload can change every component's level */
const children = new WeakMap<Logger, Set<WeakRef<Logger>>>();

/** Structured JSON logs. Credentials are redacted by path as a second line of defence. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const tracked = new Set<WeakRef<Logger>>();
  const root = pino(
    {
      level,
      base: { service: 'streamgate' },
      redact: { paths: ['token', 'credential', 'authorization', '*.token', '*.authorization', 'req.headers.authorization'], censor: '[redacted]' },
      // pino children keep the level they were created with; remember them for setLogLevel
      onChild: (child) => void tracked.add(new WeakRef(child)),
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
  children.set(root, tracked);
  return root;
}

/** Sets the level of a logger made by createLogger and of every child made from it. */
export function setLogLevel(root: Logger, level: string): void {
  root.level = level;
  const tracked = children.get(root);
  if (!tracked) return;
  for (const ref of tracked) {
    const child = ref.deref();
    if (child) child.level = level;
    else tracked.delete(ref);
  }
}
