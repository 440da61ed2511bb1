import adapter from '@sveltejs/adapter-static';

/** @type {import('@sveltejs/kit').Config} */
export default {
  kit: {
    // One static page: the harness's page server hands out index.html and the files under _app/.
    adapter: adapter({ fallback: 'index.html' }),
    // No inline module script: the page loads /__harness.js first, then the app.
    output: { bundleStrategy: 'single' },
  },
};
