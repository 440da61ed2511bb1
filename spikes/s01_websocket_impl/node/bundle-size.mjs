// What each option costs the browser in JavaScript: minified bytes and gzip bytes (zlib level 9).
//
//   node bundle-size.mjs [--sveltekit DIR [--baseline DIR] | --skip-sveltekit] [--write DIR]
//
// native and socketio: the option's client.js bundled and minified with esbuild,
// socket.io-client included. sveltekit: the JavaScript files vite emitted that the
// page at / loads (the start and app entries, the root layout and the page
// node, and their static imports, from the vite manifest), already minified by
// vite. DIR for --sveltekit is a built copy of poc/sveltekit (default: the
// source folder). --baseline DIR measures an empty SvelteKit page built the same
// way (poc/sveltekit_baseline on the POC's install) as `sveltekit_baseline`: the
// framework's own JavaScript, which the page's figure includes. --write DIR also writes the two esbuild bundles there
// (native.js, socketio.js: ES modules exporting `connect`), for pages that
// load them. Prints {option: {min_bytes, gzip_bytes, files}} as JSON.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const poc = path.join(here, '..', 'poc');
const { values: args } = parseArgs({
  options: {
    sveltekit: { type: 'string', default: path.join(poc, 'sveltekit') },
    baseline: { type: 'string' },
    'skip-sveltekit': { type: 'boolean', default: false },
    write: { type: 'string' },
  },
});

const gzipSize = (bytes) => gzipSync(bytes, { level: 9 }).length;

async function bundle(entry) {
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    write: false,
    // The clients live outside this package: resolve socket.io-client from our node_modules.
    nodePaths: [path.join(here, 'node_modules')],
    legalComments: 'none',
  });
  return result.outputFiles[0].contents;
}

/** The client files the SvelteKit page at / loads, from vite's manifest and SvelteKit's route table. */
function sveltekitPageFiles(dir) {
  const manifest = JSON.parse(readFileSync(path.join(dir, '.svelte-kit/output/client/.vite/manifest.json'), 'utf8'));
  const routes = readFileSync(path.join(dir, '.svelte-kit/output/server/manifest-full.js'), 'utf8');
  const route = routes.match(/id: "\/",[\s\S]*?layouts: \[([^\]]*)\][\s\S]*?leaf: (\d+)/);
  if (!route) throw new Error('route "/" not found in the SvelteKit server manifest');
  const nodes = [...route[1].split(',').filter((s) => s.trim()), route[2]].map((n) => `nodes/${n.trim()}`);
  const roots = Object.keys(manifest).filter((key) => {
    const name = manifest[key].name;
    return name === 'entry/start' || name === 'entry/app' || nodes.includes(name);
  });
  if (roots.length !== 2 + nodes.length) throw new Error(`expected the start and app entries and ${nodes}, found ${roots}`);
  // Static imports are loaded with the page; dynamic ones (the error page) only when needed.
  const seen = new Set();
  const visit = (key) => {
    if (seen.has(key)) return;
    seen.add(key);
    for (const dep of manifest[key].imports ?? []) visit(dep);
  };
  roots.forEach(visit);
  return [...seen].map((key) => manifest[key].file).sort();
}

const out = {};
for (const [option, entry] of [
  ['native', path.join(poc, 'native_ws', 'client.js')],
  ['socketio', path.join(poc, 'socketio', 'client.js')],
]) {
  const code = await bundle(entry);
  out[option] = { min_bytes: code.length, gzip_bytes: gzipSize(code), files: [path.relative(poc, entry)] };
  if (args.write) {
    mkdirSync(args.write, { recursive: true });
    writeFileSync(path.join(args.write, `${option}.js`), code);
  }
}

/** Minified and gzip bytes of the JavaScript the page at / of a built SvelteKit app loads. */
function sveltekitPage(dir) {
  const files = sveltekitPageFiles(dir);
  const contents = files.map((f) => readFileSync(path.join(dir, 'build', 'client', f)));
  return {
    min_bytes: contents.reduce((n, c) => n + c.length, 0),
    // Each file is its own HTTP response, so each is compressed on its own.
    gzip_bytes: contents.reduce((n, c) => n + gzipSize(c), 0),
    files,
  };
}

if (!args['skip-sveltekit']) {
  out.sveltekit = sveltekitPage(args.sveltekit);
  if (args.baseline) out.sveltekit_baseline = sveltekitPage(args.baseline);
}
console.log(JSON.stringify(out, null, 2));
