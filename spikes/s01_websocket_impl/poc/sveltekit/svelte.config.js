import adapter from '@sveltejs/adapter-node';

/** @type {import('@sveltejs/kit').Config} */
export default {
  kit: {
    adapter: adapter(),
    // The page ships the native option's client: one reconnect logic, not two copies to keep in step.
    alias: { $native: '../native_ws' },
  },
};
