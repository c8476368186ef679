#!/usr/bin/env node
// Builds a TypeScript (or JavaScript) connector into a plugboard component:
//   1. esbuild bundles the app with the SDK into one ES module, with the SDK's component host
//      (src/wit-host.ts) in front, leaving the contract's `plugboard:connector/*` imports open;
//   2. componentize-js (its API: the `jco componentize` CLI cannot read paths on some machines,
//      "os error 44") makes a component of the `connector-with-hints` world from it.
// The app module exports `plugin` and `actionHints` (`exportConnector`).
//
// Usage: node build.mjs APP.ts OUT.wasm   (esbuild and componentize-js are resolved from the
// current folder's node_modules, the plugin project's)

import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [app, out] = process.argv.slice(2);
if (!app || !out) {
  console.error('usage: node build.mjs APP.ts OUT.wasm');
  process.exit(2);
}
// The package `name` as the plugin project installed it (node_modules above the current folder),
// by its ES module entry.
function entryOf(name) {
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    const root = join(dir, 'node_modules', name);
    if (existsSync(join(root, 'package.json'))) {
      const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
      let entry = manifest.exports?.['.'] ?? manifest.exports ?? manifest.module ?? manifest.main ?? 'index.js';
      while (typeof entry === 'object' && entry !== null) {
        entry = entry.import ?? entry.default ?? entry.node ?? Object.values(entry)[0];
      }
      return join(root, entry);
    }
    if (dirname(dir) === dir) return undefined;
  }
}
const load = async (name) => {
  const entry = entryOf(name);
  if (!entry) {
    console.error(`cannot find ${name} in node_modules above ${process.cwd()}: run npm install in the plugin's folder`);
    process.exit(1);
  }
  return import(pathToFileURL(entry).href);
};
const { build } = await load('esbuild');
const { componentize } = await load('@bytecodealliance/componentize-js');

const entry = `import ${JSON.stringify(join(here, 'src/wit-host.ts'))};
export { plugin, actionHints } from ${JSON.stringify(resolve(app))};
`;
const bundled = await build({
  stdin: { contents: entry, resolveDir: process.cwd(), loader: 'ts', sourcefile: 'entry.ts' },
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  external: ['plugboard:connector/*'],
  // One copy of the SDK, the one next to this script, whatever path the app imports it by.
  alias: { '@plugboard/sdk': join(here, 'src/index.ts') },
  logLevel: 'warning',
});
const source = bundled.outputFiles[0].text;
const { component } = await componentize(source, {
  witPath: join(here, '..', 'wit'),
  worldName: 'plugboard:connector/connector-with-hints',
  // The host offers the contract's capabilities only: no WASI clocks, random, stdio or HTTP.
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`built ${out} (${component.length} bytes)`);
