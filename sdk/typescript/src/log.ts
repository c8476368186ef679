// Structured logs into the host's log, tagged with the instance and the event.
//
//     log.info('order assessed', { order: 1001, risk: 0.12 });
//
// A denied `log` capability is no reason to fail a handler, so `info`, `warn`, `error` and
// `debug` ignore it; `write` throws it.

import { Denied } from './errors.ts';
import { backend, type LogLevel } from './host.ts';

export type { LogLevel };

/** Writes one line at `level` with `fields` as text. */
export function write(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
  backend().logWrite(
    level,
    String(message),
    Object.entries(fields).map(([k, v]) => [k, String(v)]),
  );
}

function quiet(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
  try {
    write(level, message, fields);
  } catch (e) {
    if (!(e instanceof Denied)) {
      throw e;
    }
  }
}

/** Logs at `debug`. */
export const debug = (message: string, fields?: Record<string, unknown>) => quiet('debug', message, fields);
/** Logs at `info`. */
export const info = (message: string, fields?: Record<string, unknown>) => quiet('info', message, fields);
/** Logs at `warn`. */
export const warn = (message: string, fields?: Record<string, unknown>) => quiet('warn', message, fields);
/** Logs at `error`. */
export const error = (message: string, fields?: Record<string, unknown>) => quiet('error', message, fields);
