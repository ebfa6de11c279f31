// Fails (exit 1) when two files differ: the committed generated types against a fresh generation.
import { readFileSync, rmSync } from 'node:fs';

const [committed, fresh] = process.argv.slice(2);
const same = readFileSync(committed, 'utf8') === readFileSync(fresh, 'utf8');
rmSync(fresh);
if (!same) {
  console.error(`${committed} is stale: run npm run gen:types (the gateway's openapi.json changed)`);
  process.exit(1);
}
console.log(`${committed} matches ../gateway/openapi.json`);
