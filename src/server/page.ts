/** `GET /`: a placeholder until the visualizer lands; it proves the token in the URL reaches /control. */
export const PLACEHOLDER_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsup</title>
<style>body{font:14px system-ui;margin:2rem;max-width:60rem}pre{background:#f4f4f4;padding:1rem;overflow:auto}</style>
</head><body>
<h1>wsup</h1>
<p>The visualizer is not built yet. Live workspaces below, straight from <code>/control</code>.</p>
<pre id="out">connecting…</pre>
<script type="module">
const token = new URLSearchParams(location.search).get('token') ?? '';
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/control?token=' + encodeURIComponent(token);
const out = document.getElementById('out');
const ws = new WebSocket(url);
ws.onopen = () => ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'workspace.list', params: {} }));
ws.onmessage = (m) => { out.textContent = JSON.stringify(JSON.parse(m.data), null, 2); };
ws.onclose = (e) => { out.textContent += '\\nclosed: ' + e.code + ' ' + e.reason; };
</script>
</body></html>
`;
