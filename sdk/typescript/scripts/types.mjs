// Generates the TypeScript declarations of the contract (`types/`) from the WIT files with jco's
// type generator, called in memory (the `jco guest-types` CLI cannot read paths on some
// machines: "os error 44"). `test/types.test.ts` checks that the committed ones are current.
//
// Usage: node scripts/types.mjs [--check]

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wit = join(here, '..', '..', 'wit');
const out = join(here, '..', 'types');

export async function generate() {
  // jco-transpile does not export its bindgen; it is a dependency of componentize-js.
  const require = createRequire(join(here, '..', 'package.json'));
  const main = require.resolve('@bytecodealliance/jco-transpile');
  const transpile = main.slice(0, main.lastIndexOf('jco-transpile') + 'jco-transpile'.length);
  const bindgen = await import(pathToFileURL(join(transpile, 'vendor', 'js-component-bindgen-component.js')).href);
  await bindgen.$init;
  // One package in three files, given as one source.
  let source = 'package plugboard:connector@0.1.0;\n';
  for (const file of ['types.wit', 'host.wit', 'worlds.wit']) {
    source += (await readFile(join(wit, file), 'utf8')).replace(/^package [^;]+;/m, '') + '\n';
  }
  const files = bindgen.generateTypes('connector', {
    wit: { tag: 'source', val: source },
    world: 'plugboard:connector/connector-with-hints',
    guest: true,
    features: { tag: 'list', val: [] },
    tlaCompat: false,
  });
  const header = '// Generated from wit/ by scripts/types.mjs (jco). Do not edit.\n';
  return Object.fromEntries(files.map(([name, body]) => [name, header + new TextDecoder().decode(body)]));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = await generate();
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [name, text] of Object.entries(files)) {
    const path = join(out, name);
    const current = await readFile(path, 'utf8').catch(() => null);
    if (current === text) continue;
    if (check) {
      console.error(`stale: types/${name}`);
      stale++;
    } else {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
      console.log(`wrote types/${name}`);
    }
  }
  process.exit(stale ? 1 : 0);
}
