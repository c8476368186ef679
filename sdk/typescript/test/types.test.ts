// The contract's TypeScript declarations in types/ are generated from wit/: they must be current.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

// @ts-expect-error: a plain ES module script without declarations.
import { generate } from '../scripts/types.mjs';

test('types/ matches wit/ (npm run types regenerates it)', async () => {
  const files: Record<string, string> = await generate();
  assert.ok(Object.keys(files).length > 10);
  for (const [name, text] of Object.entries(files)) {
    const current = await readFile(join(fileURLToPath(new URL('../types', import.meta.url)), name), 'utf8').catch(() => '');
    assert.equal(current, text, `types/${name} is stale: run npm run types`);
  }
});
