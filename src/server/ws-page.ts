// The page a --ws port serves to a plain GET: a browser connects back to the same URL and echoes.

/**
 * Self-contained (no external assets, no inline event attributes): it opens a WebSocket to the
 * URL it was loaded from, sends what is typed as a text or a binary message, and lists each echo.
 */
export const WS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>echoplex WebSocket echo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  form { display: flex; gap: .5rem; margin: 1rem 0; }
  input[type=text] { flex: 1; font: inherit; padding: .3rem .5rem; }
  #log { font: 13px/1.5 ui-monospace, monospace; border: 1px solid #ccc; padding: .5rem; min-height: 8rem; white-space: pre-wrap; }
  .sent { color: #555; } .echo { color: #064; } .event { color: #a50; }
  /* Which way a line went is said in words, not by colour alone, and a long one wraps in the box. */
  #log div { overflow-wrap: anywhere; }
  .sent::before { content: "→ sent: "; font-weight: bold; } .echo::before { content: "← echoed: "; font-weight: bold; }
</style>
</head>
<body>
<h1>echoplex WebSocket echo</h1>
<p>Status: <strong id="status">connecting</strong> to <code id="url"></code></p>
<form id="form">
  <input type="text" id="message" autocomplete="off" placeholder="type a message" aria-label="message">
  <label><input type="checkbox" id="binary"> binary</label>
  <button type="submit" id="send">Send</button>
</form>
<div id="log" aria-live="polite"></div>
<script>
(() => {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + location.pathname + location.search;
  const status = document.getElementById('status');
  const log = document.getElementById('log');
  const input = document.getElementById('message');
  const binary = document.getElementById('binary');
  document.getElementById('url').textContent = url;
  const line = (kind, text) => {
    const div = document.createElement('div');
    div.className = kind;
    div.textContent = text;
    log.append(div);
  };
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  socket.onopen = () => { status.textContent = 'open'; };
  socket.onclose = (event) => { status.textContent = 'closed (' + event.code + (event.reason ? ' ' + event.reason : '') + ')'; line('event', 'closed with code ' + event.code); };
  socket.onerror = () => line('event', 'connection error');
  socket.onmessage = (event) => {
    if (typeof event.data === 'string') line('echo', 'text: ' + event.data);
    else line('echo', 'binary (' + event.data.byteLength + ' bytes): ' + new TextDecoder().decode(event.data));
  };
  document.getElementById('form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (socket.readyState !== WebSocket.OPEN) return;
    const text = input.value;
    if (binary.checked) socket.send(new TextEncoder().encode(text));
    else socket.send(text);
    line('sent', (binary.checked ? 'binary: ' : 'text: ') + text);
    input.value = '';
  });
})();
</script>
</body>
</html>
`;

/** The page's response headers: its own script and style only, and a WebSocket back to where it came from. */
export const WS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:",
};

/** What a method other than GET or HEAD is told (with 405). */
export const WS_OTHER_METHODS = 'this is a WebSocket echo port: GET a page, or upgrade to WebSocket';
