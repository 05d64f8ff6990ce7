import { readFileSync } from 'node:fs';
import { LineCounter, parse as parseYaml, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const WHOLE_VAR = /^\$\{[A-Z_][A-Z0-9_]*(?::-[^}]*)?\}$/;

/**
 * `${NAME}` and `${NAME:-default}` in string values come from the environment, so secrets
 * stay out of the file. A value that is one whole `${...}` is read as a YAML scalar, so
 * `port: ${PORT:-8080}` is a number.
 */
function expandEnv(value: unknown, path: string, file: string): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE_VAR.test(value);
    const expanded = value.replace(/\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
      const v = process.env[name] ?? fallback;
      if (v === undefined) throw new ConfigError(`${file}: ${path}: environment variable ${name} is not set`);
      return v;
    });
    if (!whole) return expanded;
    const scalar: unknown = parseYaml(expanded);
    return typeof scalar === 'number' || typeof scalar === 'boolean' ? scalar : expanded;
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, `${path}[${i}]`, file));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, path ? `${path}.${k}` : k, file)]));
  }
  return value;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

/** The line of the deepest node on `path` that exists in the file (a missing key points at its parent). */
function lineOf(doc: ReturnType<typeof parseDocument>, lines: LineCounter, path: readonly PropertyKey[]): string {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as (string | number)[], true);
    if (isNode(node) && node.range) return `:${lines.linePos(node.range[0]).line}`;
  }
  return '';
}

/** Parses and validates a config text; `file` is used in messages only. */
export function parseConfig(text: string, file = '<config>'): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${file}: ${e.message}`).join('\n'));
  }
  const raw = expandEnv(doc.toJS(), '', file);
  const parsed = configSchema.safeParse(raw);
  if (parsed.success) {
    checkReferences(parsed.data, file);
    return parsed.data;
  }
  const lines = parsed.error.issues.map(
    (issue: z.core.$ZodIssue) => `${file}${lineOf(doc, lineCounter, issue.path)}: ${formatPath(issue.path)}: ${issue.message}`,
  );
  throw new ConfigError(lines.join('\n'));
}

/** Cross references the schema cannot express: names used must be defined. */
function checkReferences(config: Config, file: string): void {
  const problems: string[] = [];
  const roles = new Set(Object.keys(config.policy.roles));
  config.policy.grants.forEach((g, i) => {
    for (const r of g.roles) if (!roles.has(r)) problems.push(`policy.grants[${i}].roles: unknown role "${r}" (defined: ${[...roles].join(', ') || 'none'})`);
  });
  config.inspection.topics.forEach((t, i) =>
    t.consume.forEach((c, k) => {
      for (const r of c.roles ?? []) if (!roles.has(r)) problems.push(`inspection.topics[${i}].consume[${k}].roles: unknown role "${r}" (defined: ${[...roles].join(', ') || 'none'})`);
    }),
  );
  (config.policy.approvals ?? []).forEach((a, i) => {
    for (const key of ['requesters', 'approvers'] as const) {
      for (const r of a[key] ?? []) if (!roles.has(r)) problems.push(`policy.approvals[${i}].${key}: unknown role "${r}" (defined: ${[...roles].join(', ') || 'none'})`);
    }
  });
  if (problems.length > 0) throw new ConfigError(problems.map((p) => `${file}: ${p}`).join('\n'));
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config: ${(err as Error).message}`);
  }
  return parseConfig(text, file);
}
