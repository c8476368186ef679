// Publishing events into the router, besides those a handler returns.
//
//     const id = emit.publish(NewEvent.json('alerts/raised', { order: 1001 }));

import { backend } from './host.ts';
import type { NewEvent } from './types.ts';

/** Publishes `event`; answers the id the host gave it. */
export function publish(event: NewEvent): string {
  return backend().emitPublish(event);
}
