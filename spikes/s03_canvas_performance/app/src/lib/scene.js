// The tabletop scene every renderer draws: a map, tokens, strokes and a camera, all deterministic from a seed.

export const VIEW_W = 1280;
export const VIEW_H = 720;
export const TOKEN = 64; // token size in map pixels
export const PROBE_COLOR = [255, 0, 255]; // token 0's colour, for the pixel check
const COLORS = ['#d94f4f', '#4f8fd9', '#4fd97a', '#d9c54f', '#a24fd9', '#4fd9d2', '#d98a4f', '#ff00ff'];
export const ATLAS_COLORS = COLORS;

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
}

/** The scene: `tokens` (x, y, colour index, phase), `strokes` (flat point arrays), the map size. */
export function makeScene({ tokens = 100, strokes = 0, mapSize = 4096, minPoints = 50, maxPoints = 500, seed = 1, bad = null }) {
  const r = rng(seed);
  const list = [];
  for (let i = 0; i < tokens; i++) {
    list.push({ id: i, x: 256 + r() * (mapSize - 512), y: 256 + r() * (mapSize - 512), c: i === 0 ? 7 : i % 7, ph: r() * 6.283, x0: 0, y0: 0 });
  }
  if (list.length) {
    // Token 0 sits where the camera starts looking, so the pixel check knows where it must be.
    list[0].x = mapSize / 2;
    list[0].y = mapSize / 2;
  }
  for (const t of list) { t.x0 = t.x; t.y0 = t.y; }
  const st = [];
  for (let i = 0; i < strokes; i++) {
    const n = Math.floor(minPoints + r() * (maxPoints - minPoints + 1));
    const pts = new Float32Array(n * 2);
    let x = r() * mapSize, y = r() * mapSize, a = r() * 6.283;
    for (let k = 0; k < n; k++) {
      a += (r() - 0.5) * 0.6;
      x = Math.min(mapSize, Math.max(0, x + Math.cos(a) * 4));
      y = Math.min(mapSize, Math.max(0, y + Math.sin(a) * 4));
      pts[2 * k] = x; pts[2 * k + 1] = y;
    }
    st.push({ id: i, color: COLORS[i % 7], width: 2 + (i % 4), pts });
  }
  if (bad === 'nan' && list.length > 2) {
    list[1].x = NaN; list[1].x0 = NaN;
    list[2].x = 1e308; list[2].x0 = 1e308;
  }
  if (bad === 'long-stroke') {
    const n = 100000, pts = new Float32Array(n * 2);
    for (let k = 0; k < n; k++) { pts[2 * k] = (k * 7) % mapSize; pts[2 * k + 1] = (k * 13) % mapSize; }
    st.push({ id: st.length, color: '#ffffff', width: 2, pts });
  }
  return { tokens: list, strokes: st, mapSize };
}

/** Which coordinates a renderer must refuse: NaN, infinite, or far off the map (it would draw garbage or nothing). */
export function badCoordinates(scene) {
  const lim = scene.mapSize * 4;
  return scene.tokens.filter((t) => !Number.isFinite(t.x) || !Number.isFinite(t.y) || Math.abs(t.x) > lim || Math.abs(t.y) > lim).length;
}

/** A 256-px map tile: grass with a grid, as a canvas (every renderer's map is this tile repeated). */
export function mapTile() {
  const c = document.createElement('canvas');
  c.width = c.height = 256;
  const g = c.getContext('2d');
  g.fillStyle = '#35502f'; g.fillRect(0, 0, 256, 256);
  g.fillStyle = '#3d5b36';
  for (let i = 0; i < 16; i++) g.fillRect((i * 53) % 240, (i * 97) % 240, 16, 16);
  g.strokeStyle = '#27391f'; g.lineWidth = 2; g.strokeRect(0, 0, 256, 256);
  return c;
}

/** The whole map as one canvas (``size`` square), or an error string when the browser cannot hold it. */
export function mapCanvas(size) {
  const c = document.createElement('canvas');
  c.width = c.height = size;
  const g = c.getContext('2d');
  if (!g) return { canvas: null, error: `the browser gave no 2D context for a ${size}x${size} canvas` };
  g.fillStyle = g.createPattern(mapTile(), 'repeat');
  g.fillRect(0, 0, size, size);
  // A canvas past the browser's limit gives a context and draws nothing, without an exception: read a pixel back.
  const px = g.getImageData(size >> 1, size >> 1, 1, 1).data;
  if (px[3] === 0) return { canvas: null, error: `a ${size}x${size} canvas rendered blank (over the browser's canvas limit; no exception was raised)` };
  return { canvas: c, error: null };
}

/** The token atlas: one row of TOKEN-px discs, one per colour (PixiJS slices it into frames; the others draw from it). */
export function tokenAtlas() {
  const c = document.createElement('canvas');
  c.width = TOKEN * COLORS.length; c.height = TOKEN;
  const g = c.getContext('2d');
  COLORS.forEach((col, i) => {
    g.fillStyle = col;
    g.beginPath(); g.arc(i * TOKEN + TOKEN / 2, TOKEN / 2, TOKEN / 2 - 3, 0, 6.2832); g.fill();
    g.lineWidth = 3; g.strokeStyle = '#111'; g.stroke();
  });
  return c;
}

/** The camera at time ``t`` (ms): centred on the map's middle, panning a circle and zooming 0.75-1.25 when ``moving``. */
export function camera(t, mapSize, moving) {
  if (!moving) return { x: mapSize / 2 - VIEW_W / 2, y: mapSize / 2 - VIEW_H / 2, zoom: 1 };
  const zoom = 1 + 0.25 * Math.sin(t / 1700);
  const cx = mapSize / 2 + 300 * Math.sin(t / 2300), cy = mapSize / 2 + 300 * Math.cos(t / 2900);
  return { x: cx - VIEW_W / 2 / zoom, y: cy - VIEW_H / 2 / zoom, zoom };
}

/** Move tokens for time ``t``: the first ``moving`` of them (all when ``moving`` is the count) circle their start point. */
export function moveTokens(tokens, t, moving) {
  const n = Math.min(moving, tokens.length);
  for (let i = 1; i < n; i++) {
    const k = tokens[i];
    k.x = k.x0 + 40 * Math.cos(t / 400 + k.ph);
    k.y = k.y0 + 40 * Math.sin(t / 400 + k.ph);
  }
  return n;
}
