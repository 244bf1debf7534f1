import { createHash } from 'node:crypto';

/** The page's only style sheet, inlined (no external assets) and allowed by its hash. */
export const STYLE = `
:root { color-scheme: light; --fg: #1d2330; --muted: #5b6475; --line: #d6dbe4; --bg: #f6f7f9; --ok: #17733a; --bad: #b3261e; --warn: #8a5a00; --accent: #2450a6; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; color: var(--fg); background: var(--bg); }
header { background: #1d2330; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
header p { margin: 4px 0 0; color: #c9d1e0; font-size: 13px; }
header code { color: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 24px 40px; }
h2 { font-size: 17px; margin: 24px 0 8px; }
h3 { font-size: 15px; margin: 0 0 6px; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
code.zone-name { font-weight: 600; }
/* Long tokens (thumbprints, JWS, URLs, 253-character names) wrap anywhere rather than widen the page. */
td, dd, p, li { overflow-wrap: anywhere; }
.badge.cached { color: var(--muted); }
.ok { color: var(--ok); }
.bad { color: var(--bad); }
.warn { color: var(--warn); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; border-bottom: 1px solid var(--line); }
th { background: #eef1f6; font-weight: 600; font-size: 13px; }
td.num { font-variant-numeric: tabular-nums; }
ul.plain { list-style: none; margin: 0; padding: 0; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; min-width: 0; }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 12px; border: 1px solid currentColor; }
form.lookup { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; background: #fff; border: 1px solid var(--line); padding: 10px; }
form.lookup input { flex: 1 1 320px; font: inherit; padding: 6px 8px; border: 1px solid #9aa3b5; border-radius: 4px; }
form.lookup button { font: inherit; padding: 6px 14px; border: 0; border-radius: 4px; background: var(--accent); color: #fff; cursor: pointer; }
#lookup-status { min-height: 1.4em; margin: 6px 0; color: var(--muted); }
.notice { background: #fff8e5; border: 1px solid #e7c66b; padding: 8px 12px; }
.error { background: #fdecea; border: 1px solid #e5a29d; padding: 8px 12px; }
.error strong { color: var(--bad); }
ol.chain { list-style: none; margin: 0; padding: 0; }
ol.chain > li { background: #fff; border: 1px solid var(--line); border-left: 4px solid var(--accent); padding: 10px 12px; }
ol.chain > li.link { background: none; border: 0; padding: 2px 0 2px 28px; color: var(--muted); font-size: 13px; }
ol.chain > li.link::before { content: "\\2193  "; font-size: 16px; color: var(--accent); }
ol.chain > li.final { border-left-color: var(--ok); }
ol.chain > li.final.denial { border-left-color: var(--warn); }
.summary { margin: 8px 0 12px; font-size: 16px; }
`;

/**
 * The lookup box's script: submits without leaving the page by fetching the same server-rendered result
 * (`?fragment=lookup`) from this origin, and keeps the address shareable. Without it the form is a
 * plain GET that the server renders in full.
 */
export const SCRIPT = `
(function () {
  var form = document.getElementById('lookup-form');
  var out = document.getElementById('lookup-result');
  var status = document.getElementById('lookup-status');
  if (!form || !out || !status || !window.fetch || !window.AbortController) return;
  form.addEventListener('submit', function (ev) {
    var input = form.elements.namedItem('lookup');
    var handle = input && input.value ? input.value.trim() : '';
    ev.preventDefault();
    if (handle === '') { status.textContent = 'Type a handle, for example alice@social.example.'; return; }
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, 20000);
    var query = '?lookup=' + encodeURIComponent(handle);
    status.textContent = 'Resolving ' + handle + '\\u2026';
    form.setAttribute('aria-busy', 'true');
    fetch(location.pathname + query + '&fragment=lookup', { signal: ctl.signal, credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (res) {
        if (!res.ok) throw new Error('the server answered HTTP ' + res.status);
        return res.text();
      })
      .then(function (text) {
        out.innerHTML = text;
        status.textContent = '';
        history.replaceState(null, '', location.pathname + query);
      })
      .catch(function (err) {
        status.textContent = 'Lookup failed: ' + (err && err.name === 'AbortError' ? 'no answer within 20 s' : String(err && err.message));
      })
      .finally(function () {
        clearTimeout(timer);
        form.removeAttribute('aria-busy');
      });
  });
})();
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/**
 * Content-Security-Policy of the page: nothing but this exact inline script and style (by hash), fetches
 * and form submissions to this origin only, no framing, no plugins, no base URL changes.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');
