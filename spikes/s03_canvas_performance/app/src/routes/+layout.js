// A client-only page: the renderers need a real canvas, and the harness serves the build as static files.
export const ssr = false;
export const prerender = false;
