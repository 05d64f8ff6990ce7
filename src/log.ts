import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs. Credentials are redacted by path as a second line of defence. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'streamgate' },
      redact: { paths: ['token', 'credential', 'authorization', '*.token', '*.authorization', 'req.headers.authorization'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}
