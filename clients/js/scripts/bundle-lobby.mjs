// Bundles the lobby page (crates/hub/lobby/src/app.js, ES modules, built on this
// package's sources) into the one classic script the hub serves,
// crates/hub/lobby/app.js (docs/clients.md). The output is committed: building the
// hub needs no Node. CI fails when it is out of date.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const lobby = path.resolve(here, '../../../crates/hub/lobby');
await build({
  entryPoints: [path.join(lobby, 'src/app.js')],
  outfile: path.join(lobby, 'app.js'),
  bundle: true,
  format: 'iife',
  target: 'es2020',
  charset: 'utf8',
  legalComments: 'none',
  logLevel: 'warning',
  banner: { js: '// Generated from crates/hub/lobby/src/ by clients/js/scripts/bundle-lobby.mjs (esbuild). Do not edit: bash schema/regenerate.sh' },
});
console.log('wrote crates/hub/lobby/app.js');
