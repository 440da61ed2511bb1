// GET /health, served by SvelteKit's handler (not the WebSocket server): the app is up and routes plain HTTP.
export function GET() {
  return new Response('ok\n', { headers: { 'content-type': 'text/plain; charset=utf-8' } });
}
