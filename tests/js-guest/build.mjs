// Builds a connector component from JavaScript with componentize-js's API (its CLI is not needed).
// Usage: node build.mjs app.js WIT_DIR OUT.wasm
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';
const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize(await readFile(source, 'utf8'), {
  witPath: wit, worldName: 'plugboard:connector/connector', disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
